// A chat room: JSON frames in and out, by ticket or by token in the subprotocol.
import {demoConnect} from "./client.js";

const room = JSON.parse(document.getElementById("room-name").textContent);
const methodEl = document.getElementById("method");
methodEl.value = localStorage.getItem("wsauth-demo-method") || "ticket";
const list = document.getElementById("messages");
const STOPPED = {4401: "credential refused: log in again", 4403: "disconnected by the server (revoked)"};

function add(parts, cls) {
  const li = document.createElement("li");
  if (cls) li.className = cls;
  li.append(...parts);
  list.append(li);
  list.scrollTop = list.scrollHeight;
}

function onMessage(data) {
  const event = JSON.parse(data);
  if (event.type === "error") return add([event.detail], "system");
  if (event.type === "presence") {
    document.getElementById("presence").textContent = event.users.join(", ") || "–";
    return;
  }
  const who = document.createElement("b");
  who.textContent = event.user;
  add([who, document.createTextNode(event.message)]);
}

function onStateChange(state, detail) {
  if (state === "open") add(["connected by " + methodEl.value], "system");
  if (state === "stopped") add([STOPPED[detail] || "stopped: " + detail], "system");
}

let conn = null;
function start() {
  if (conn) conn.close();
  const path = "/ws/chat/" + encodeURIComponent(room) + "/?presence=1";
  conn = demoConnect(path, methodEl.value, {protocols: ["chat"], onMessage, onStateChange});
}

methodEl.addEventListener("change", () => {
  localStorage.setItem("wsauth-demo-method", methodEl.value);
  start();
});
document.getElementById("send").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = document.getElementById("text");
  if (input.value.trim() && conn) conn.send(JSON.stringify({message: input.value}));
  input.value = "";
});
start();
