from websockets.sync.client import connect


def test_echo_by_subprotocol(issuer, project, daphne, redis_url):
    server = daphne(project(redis_url))
    token = issuer.token()
    with connect(
        server.ws + "/ws/echo/", subprotocols=["chat", "authorization_bearer_" + token]
    ) as ws:
        assert ws.subprotocol == "chat"
        assert ws.recv(timeout=5) == "Hello Alice Liddell"
