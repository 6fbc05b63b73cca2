"""Text for Markdown tables, shared by the tool's reports and the experiment scripts."""


def markdown_cell(text: str) -> str:
    """`text` inside a table cell: a bare `|` (genotypes have them) would end the cell, even in code."""
    return text.replace("|", "\\|")
