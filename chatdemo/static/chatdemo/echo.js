// The echo page: the seed's behaviour, new WebSocket(url, ["authorization_bearer_" + token]).
import {demoConnect} from "./client.js";

const list = document.getElementById("messages");
const line = (text) => {
  const li = document.createElement("li");
  li.textContent = text;
  list.append(li);
};
const conn = demoConnect("/ws/echo/", "subprotocol", {onMessage: line});
document.getElementById("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  conn.send(input.value);
  input.value = "";
});
