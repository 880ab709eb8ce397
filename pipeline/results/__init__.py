"""What evaluations leave behind: where each is kept, PNG pictures, the run's HTML report."""
