# Identity stand-in: ftfy is not installable here (not in Debian bookworm, no PyPI). Same convention as the shared fixtures.
def fix_text(text, *a, **k):
    return text
