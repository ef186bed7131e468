import pytest

from chat.browsers import describe

CHROME_LINUX = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "HeadlessChrome/156.0.0.0 Safari/537.36")
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1")
EDGE_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87")
FIREFOX_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.5; rv:127.0) Gecko/20100101 Firefox/127.0"
CHROME_ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/126.0.6478.122 Mobile Safari/537.36")


@pytest.mark.parametrize(("user_agent", "described"), [
    (CHROME_LINUX, "Chrome 156 on Linux"),
    (SAFARI_IPHONE, "Safari 17 on iOS"),
    (EDGE_WINDOWS, "Edge 126 on Windows"),
    (FIREFOX_MAC, "Firefox 127 on macOS"),
    (CHROME_ANDROID, "Chrome 126 on Android"),
    ("curl/8.5.0", "curl/8.5.0"),
])
def test_a_user_agent_reads_as_browser_and_system(user_agent: str, described: str) -> None:
    assert describe(user_agent) == described
