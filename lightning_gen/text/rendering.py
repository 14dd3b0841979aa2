"""Model text as TensorBoard shows it: verbatim, prompt set apart from completion.

TensorBoard's text plugin renders markdown (tables, fenced code) and then sanitises the HTML. Model output is
full of characters that markdown or HTML would eat: ``<eos>`` disappears as an unknown tag, ``#`` makes a
heading, ``*`` emphasis, ``|`` a table cell, leading spaces vanish, newlines fold. `escape` turns every ASCII
punctuation character into a numeric character reference and keeps spaces and newlines visible, so what the
model wrote is exactly what the reader sees.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lightning_gen.text.samples import Sample
from lightning_gen.text.tables import sample_table

__all__ = [
    "escape",
    "markdown_code",
    "markdown_escape",
    "overview_table",
    "parse_sample_markdown",
    "sample_markdown",
    "unescape",
]

_GREEDY_MARK = "<br><br><em>greedy:</em> "
_REFERENCE_MARK = "<br><br><em>reference:</em> "
_PUNCTUATION = re.compile(r"[!-/:-@\[-`{-~]")
# Spaces at a line start, and all but the first of a run, would be collapsed by the browser.
_SIGNIFICANT_SPACES = re.compile(r"(?m)^ +| {2,}")


def _keep_spaces(match: re.Match[str], starts_line: bool) -> str:
    run = len(match.group())
    at_line_start = (match.start() == 0 and starts_line) or match.string[match.start() - 1: match.start()] == "\n"
    return "&#160;" * run if at_line_start else " " + "&#160;" * (run - 1)


def escape(text: str, *, starts_line: bool = True) -> str:
    """Markdown/HTML-inert text that TensorBoard displays character for character.

    Args:
        text: Any text.
        starts_line: Whether the text starts a line; False when it continues other text (a completion after
            its prompt), where a single leading space is an ordinary space.

    Example::

        >>> escape("a|b <eos>")
        'a&#124;b &#60;eos&#62;'
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _PUNCTUATION.sub(lambda m: f"&#{ord(m.group())};", text)
    # Non-breaking spaces survive whitespace collapsing; single spaces stay breakable so long lines wrap.
    text = _SIGNIFICANT_SPACES.sub(lambda m: _keep_spaces(m, starts_line), text.replace("\t", "    "))
    return text.replace("\n", "<br>")


def sample_markdown(sample: Sample) -> str:
    """One prompt's entry: the prompt in bold running into the completion, then the reference if any.

    Example::

        >>> sample_markdown(Sample("Hi", " there", [1], [2]))
        '<strong>Hi</strong> there'
    """
    continues = not sample.prompt.endswith("\n")
    text = f"<strong>{escape(sample.prompt)}</strong>{escape(sample.completion, starts_line=not continues)}"
    if sample.greedy is not None:
        text += f"{_GREEDY_MARK}<strong>{escape(sample.prompt)}</strong>"
        text += escape(sample.greedy, starts_line=not continues)
    if sample.reference is not None:
        text += f"{_REFERENCE_MARK}{escape(sample.reference)}"
    return text


def overview_table(samples: Sequence[Sample]) -> str:
    """A markdown table of all prompts at one step: number, prompt, completion (and greedy, reference).

    Example::

        >>> print(overview_table([Sample("a", "b", [0], [1])]))
        | # | prompt | completion |
        |---|---|---|
        | 0 | a | b |
    """
    return sample_table(samples, escape)


# ----------------------------------------------------------------- back from TensorBoard's text
_PROMPT = re.compile(r"<strong>(.*?)</strong>(.*)", re.DOTALL)
_CHAR_REF = re.compile(r"&#(?:(\d+)|[xX]([0-9a-fA-F]+));")


def unescape(text: str) -> str:
    """Plain text from `escape` output: character references, ``&#160;``, ``<br>``.

    ``escape`` normalises ``\\r\\n``/``\\r`` to ``\\n`` and tabs to four spaces; everything else round-trips.
    A literal no-break space in the text stays one; only the ``&#160;`` escape adds to keep spaces turns back
    into a space.

    Example::

        >>> unescape("&#160;&#160;a&#124;b<br>&#60;eos&#62;")
        '  a|b\\n<eos>'
    """

    def char(match: re.Match[str]) -> str:
        code = int(match.group(1)) if match.group(1) else int(match.group(2), 16)
        return " " if code == 160 else chr(code)

    return _CHAR_REF.sub(char, text.replace("<br>", "\n"))


def parse_sample_markdown(text: str) -> Sample:
    """The `Sample` behind `sample_markdown` output (ids are not logged: empty).

    Text in another shape (not ``<strong>prompt</strong>completion``) is read as a completion of an empty prompt.

    Example::

        >>> parse_sample_markdown("<strong>Hi</strong> there<br><br><em>reference:</em> you")
        Sample(prompt='Hi', completion=' there', prompt_ids=[], completion_ids=[], reference='you', greedy=None, metrics={})
    """
    # Escaped text never holds a literal '<' other than in '<br>', so the marks cannot occur inside it.
    text, found, reference = text.partition(_REFERENCE_MARK)
    text, found_greedy, greedy = text.partition(_GREEDY_MARK)
    match = _PROMPT.fullmatch(text)
    prompt, completion = (match.group(1), match.group(2)) if match else ("", text)
    if found_greedy:
        greedy_match = _PROMPT.fullmatch(greedy)
        greedy = greedy_match.group(2) if greedy_match else greedy
    return Sample(
        prompt=unescape(prompt),
        completion=unescape(completion),
        prompt_ids=[],
        completion_ids=[],
        reference=unescape(reference) if found else None,
        greedy=unescape(greedy) if found_greedy else None,
    )


# ----------------------------------------------------------------- plain markdown (MLflow, exports)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&|~$])")


def markdown_escape(text: str) -> str:
    """Text that a CommonMark/GFM renderer shows as written, inside a table cell or a paragraph.

    Unlike `escape` (TensorBoard), the source stays readable: markdown characters are backslash-escaped.

    Example::

        >>> print(markdown_escape("a|b *c*"))
        a\\|b \\*c\\*
    """
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = re.sub(r"(?m)^ | (?= )", "&nbsp;", text)  # leading spaces and all but the last of a run would collapse
    return text.replace("\n", "<br>")


_BACKTICKS = re.compile(r"`+")


def markdown_code(text: str, *, in_table: bool = False) -> str:
    """``text`` (one line) as a markdown code span, which any CommonMark/GFM renderer shows exactly as written.

    Nothing inside needs escaping but a table's ``|`` (GFM splits cells before it reads code spans): the span's
    backtick fence is longer than any run of backticks in the text, and a text that starts or ends with a
    backtick or a space is padded with one space on each side, which the renderer takes off again.

    Example::

        >>> print(markdown_code("*a* <b>"), markdown_code("x `y`"), markdown_code("a|b", in_table=True))
        `*a* <b>` `` x `y` `` `a\\|b`
    """
    fence = "`" * (1 + max((len(run) for run in _BACKTICKS.findall(text)), default=0))
    if text[:1] in ("`", " ") or text[-1:] in ("`", " "):
        text = f" {text} "
    if in_table:
        text = text.replace("|", "\\|")
    return f"{fence}{text}{fence}"
