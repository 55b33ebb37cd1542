// The demo's glue around wsauth.js: credentials from the session, the page's status line.
// The pages import it (room.js, echo.js); configuration comes from the page's markup.
import {connect} from "../wsauth/wsauth.js";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const WS_BASE = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
let lifetimeTimer = null;

function showLifetime(expiresAt) {
  const el = document.getElementById("lifetime");
  clearInterval(lifetimeTimer);
  if (!expiresAt) { el.textContent = "–"; return; }
  const tick = () => {
    const left = Math.max(0, Math.round(expiresAt - Date.now() / 1000));
    el.textContent = Math.floor(left / 60) + " min " + String(left % 60).padStart(2, "0") + " s";
  };
  tick();
  lifetimeTimer = setInterval(tick, 1000);
}

// A fresh access token from the session (renewed by the server when little life is left).
export async function getToken() {
  const r = await fetch("/demo/token/", {method: "POST", headers: {"X-CSRFToken": CSRF}});
  if (!r.ok) throw new Error("no access token (" + r.status + ")");
  const body = await r.json();
  showLifetime(body.expires_at);
  return body.access_token;
}

function showState(state, detail) {
  const el = document.getElementById("state");
  el.textContent = state;
  el.className = "state-" + state;
  document.getElementById("detail").textContent = detail ? "(" + detail + ")" : "";
}

// wsauth.js's connect() for a path of this site, with the session's credentials; the
// page's own onStateChange (if any) runs after the status line is updated.
export function demoConnect(path, method, {onStateChange, ...options} = {}) {
  return connect(WS_BASE + path, {
    method,
    getToken,
    csrfToken: CSRF,
    onStateChange: (state, detail) => {
      showState(state, detail);
      if (onStateChange) onStateChange(state, detail);
    },
    onControl: (frame) => frame.expires_at && showLifetime(frame.expires_at),
    ...options,
  });
}

// The token's lifetime is shown whatever the method.
getToken().catch(() => {});
