"""The agent's side for browser tests that do not need the dashboard's pages."""

from __future__ import annotations

import contextlib
import threading
import uuid

import httpx

from tests.support import wait_for


class AgentSession:
    """An agent signed in over HTTP (session cookie and CSRF token), as the dashboard is."""

    def __init__(self, base_url: str, email: str, password: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=15)
        response = self.http.post("/login", data={"email": email, "password": password},
                                  headers={"Accept": "application/json"})
        assert response.status_code == 200, response.text
        self.csrf = response.json()["csrf_token"]

    def reply(self, conversation_id: int, body: str) -> httpx.Response:
        response = self.http.post(
            f"/conversations/{conversation_id}/messages", headers={"X-CSRF-Token": self.csrf},
            data={"body": body, "client_id": uuid.uuid4().hex},
        )
        assert response.status_code == 201, response.text
        return response

    def act(self, conversation_id: int, action: str) -> httpx.Response:
        response = self.http.post(f"/conversations/{conversation_id}/{action}",
                                  headers={"X-CSRF-Token": self.csrf})
        assert response.status_code == 200, response.text
        return response

    def close(self) -> None:
        self.http.close()


class AgentStream:
    """The agent's SSE stream, read on a thread into ``data`` (every event's data)."""

    def __init__(self, session: AgentSession, conversation_id: int | None = None) -> None:
        self.data: list[str] = []
        self._session = session
        self._query = {"conversation": str(conversation_id)} if conversation_id else {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(httpx.HTTPError):  # the test is over, or killed the server
            self._read_events()

    def _read_events(self) -> None:
        timeout = httpx.Timeout(10.0, read=None)
        with self._session.http.stream("GET", "/stream", params=self._query,
                                       timeout=timeout) as response:
            event: list[str] = []
            for line in response.iter_lines():
                if self._stop.is_set():
                    return
                if line.startswith("data: "):
                    event.append(line[6:])
                elif line == "" and event:
                    self.data.append("\n".join(event))
                    event = []

    def wait_for_text(self, text: str, timeout: float = 10) -> None:
        wait_for(lambda: any(text in item for item in self.data), timeout,
                 f"{text!r} on the agent's stream")

    def close(self) -> None:
        self._stop.set()
