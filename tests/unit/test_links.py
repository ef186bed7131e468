import pytest

from chat.links import linkify

ATTRS = 'target="_blank" rel="noopener noreferrer nofollow"'


@pytest.mark.parametrize(("text", "html"), [
    ("Track it at https://post.example/t?id=1&x=2.",
     f'Track it at <a href="https://post.example/t?id=1&amp;x=2" {ATTRS}>'
     "https://post.example/t?id=1&amp;x=2</a>."),
    ("(see http://a.example/wiki/X_(Y))",
     f'(see <a href="http://a.example/wiki/X_(Y)" {ATTRS}>http://a.example/wiki/X_(Y)</a>)'),
    ('"https://q.example/"', f'&#34;<a href="https://q.example/" {ATTRS}>https://q.example/</a>&#34;'),
    ("<b>no</b> javascript:alert(1) or www.example.com",
     "&lt;b&gt;no&lt;/b&gt; javascript:alert(1) or www.example.com"),
])
def test_addresses_become_links_and_everything_else_stays_escaped_text(
    text: str, html: str,
) -> None:
    assert str(linkify(text)) == html


def test_a_quote_in_an_address_cannot_leave_the_attribute() -> None:
    html = str(linkify('http://a.example/"onmouseover="alert(1)'))
    assert '"onmouseover' not in html and "&#34;onmouseover=&#34;alert(1)" in html
