"""One plain line saying why `torch.load(weights_only=True)` (or any reader) refused a file.

torch's own message for a pickle that needs code advises passing `weights_only=False` or allow-listing the
class, in terminal colour codes: advice a user must never follow with a downloaded file. This says what
was refused and why instead.
"""
import pickle
import re

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error: ([^\n]*?)(?:\. |\.?$)", re.MULTILINE)


def describe(err: Exception) -> str:
    """`err` as one line without colour codes; a weights-only refusal names the Python objects refused."""
    text = _ANSI.sub("", str(err))
    if isinstance(err, pickle.UnpicklingError) and "weights_only" in text.lower().replace(" ", "_"):
        names = sorted(set(_GLOBAL.findall(text)))
        if names:
            return (f"it holds pickled Python objects besides tensors ({', '.join(names)}); loading them would run "
                    f"code from the file, so it was refused")
        reason = _UNPICKLER_REASON.search(text)
        what = reason.group(1) if reason else "refused by the weights-only loader"
        return f"it is a pickle that does more than store tensors ({what}); loading it could run code from the file, " \
               f"so it was refused"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else repr(err)}"
