"""Students small enough for the tiny teacher of conftest.py (2 layers, width 32, 2 heads), per
KD method; methods not listed here distil into their default student."""

TINY = {
    "bilstm": "bilstm:hidden=16",
    "probes": "transformer:layers=2,hidden=16,heads=2,ffn=32",
    "pkd-skip": "transformer:layers=2",
    "pkd-last": "transformer:layers=2",
    "tinybert": "transformer:layers=2,hidden=16,heads=2,ffn=32",
    "minilm": "transformer:layers=1,hidden=16,heads=2,ffn=32",
}
