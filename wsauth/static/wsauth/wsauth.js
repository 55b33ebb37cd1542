// wsauth.js: a dependency-free client for django-wsauth (ES module).
//
//   import {connect} from "/static/wsauth/wsauth.js";
//   const conn = connect("wss://chat.example.com/ws/chat/lobby/", {
//     method: "subprotocol",            // or "ticket", or "message" (first-message auth)
//     protocols: ["chat"],              // application protocols, offered before the token
//                                       // (default ["wsauth"]: the token is never selected)
//     getToken: async () => accessToken, // fresh access token (connect and refresh)
//     onMessage: (data) => ...,         // application frames only, never wsauth.* frames
//     onStateChange: (state, detail) => ..., // "connecting" | "open" | "closed" | "stopped"
//   });
//   conn.send("hello"); conn.close();
//
// It refreshes the credential in-band when the server announces its expiry
// (wsauth.expiring -> getToken -> wsauth.refresh), reconnects with a fresh credential and
// exponential backoff on 4001 (expired), 4008 (too slow a reader), 4009 (too big), 4408
// (auth timeout), 4429 (rate limited) and network drops, and stops on 4401 (invalid) and
// 4403 (forbidden).
//
// DPoP-bound tokens (RFC 9449): pass dpopKey, an ECDSA P-256 CryptoKeyPair (its private
// key may be non-extractable), with method "ticket". Tickets are then bought with
// "Authorization: DPoP <token>" and a proof signed by that key (answering a server nonce
// when asked), and the socket renews with a fresh DPoP ticket: no proof can ride on a
// WebSocket frame, so {type: "wsauth.refresh", ticket} replaces the token refresh.

const CONTROL = /^\s*\{\s*"type"\s*:\s*"wsauth\./;
const STOP_CODES = new Set([4401, 4403]);
export const CLOSE_CODES = {
  EXPIRED: 4001, SLOW_CLIENT: 4008, MESSAGE_TOO_BIG: 4009, INVALID: 4401, FORBIDDEN: 4403,
  AUTH_TIMEOUT: 4408, RATE_LIMITED: 4429,
};

// Offered when the page names no application protocol: the server then selects it, so
// the token is never the selected subprotocol (echoed in the answer, kept by the server
// as the socket's protocol, and refused by servers that check the selection).
export const DEFAULT_PROTOCOL = "wsauth";

const utf8 = new TextEncoder();

function b64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// A DPoP proof (RFC 9449 section 4.2) for one request, bound to the access token (ath).
export async function dpopProof(keyPair, method, url, accessToken, nonce = null) {
  const jwk = await crypto.subtle.exportKey("jwk", keyPair.publicKey);
  const header = {typ: "dpop+jwt", alg: "ES256", jwk: {kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y}};
  const claims = {
    jti: b64url(crypto.getRandomValues(new Uint8Array(16))),
    htm: method,
    htu: url,
    iat: Math.floor(Date.now() / 1000),
    ath: b64url(await crypto.subtle.digest("SHA-256", utf8.encode(accessToken))),
  };
  if (nonce) claims.nonce = nonce;
  const input = b64url(utf8.encode(JSON.stringify(header))) + "." + b64url(utf8.encode(JSON.stringify(claims)));
  const signature = await crypto.subtle.sign({name: "ECDSA", hash: "SHA-256"}, keyPair.privateKey, utf8.encode(input));
  return input + "." + b64url(signature);  // WebCrypto's ECDSA signature is JWS's r || s
}

export function connect(url, options = {}) {
  const opts = {
    method: "subprotocol",
    protocols: [DEFAULT_PROTOCOL],
    getToken: null,
    ticketUrl: "/wsauth/ticket/",
    csrfToken: null,          // sent as X-CSRFToken when the ticket is bought with a session
    ticketWithToken: false,   // buy the ticket with "Authorization: Bearer <getToken()>"
    dpopKey: null,            // a CryptoKeyPair: buy DPoP tickets, renew with a fresh one
    subprotocolPrefix: "authorization_bearer_",
    initialDelay: 1000,
    maxDelay: 30000,
    onMessage: () => {},
    onStateChange: () => {},
    onControl: () => {},
    WebSocket: globalThis.WebSocket,
    ...options,
  };
  let socket = null;
  let closedByUser = false;
  let attempt = 0;
  let timer = null;
  let state = "idle";
  let expiresAt = null;
  let dpopNonce = null;

  function setState(next, detail) {
    state = next;
    opts.onStateChange(next, detail);
  }

  async function token() {
    if (!opts.getToken) throw new Error("getToken is required for method " + opts.method);
    const value = await opts.getToken();
    if (!value) throw new Error("getToken returned no token");
    return value;
  }

  function ticketHtu() {
    // The request URL without query and fragment (RFC 9449 section 4.3).
    const target = new URL(opts.ticketUrl, globalThis.location ? globalThis.location.href : undefined);
    target.search = "";
    target.hash = "";
    return target.href;
  }

  async function buyTicket() {
    const headers = {};
    if (opts.csrfToken) headers["X-CSRFToken"] = opts.csrfToken;
    const accessToken = opts.dpopKey || opts.ticketWithToken ? await token() : null;
    if (accessToken && !opts.dpopKey) headers.Authorization = "Bearer " + accessToken;
    for (let attempt = 0; ; attempt++) {
      if (opts.dpopKey) {
        headers.Authorization = "DPoP " + accessToken;
        headers.DPoP = await dpopProof(opts.dpopKey, "POST", ticketHtu(), accessToken, dpopNonce);
      }
      const response = await fetch(opts.ticketUrl, {method: "POST", headers, credentials: "same-origin"});
      const nonce = response.headers.get("DPoP-Nonce");
      if (nonce) dpopNonce = nonce;
      const challenge = response.headers.get("WWW-Authenticate") || "";
      if (response.status === 401 && opts.dpopKey && nonce && attempt === 0 && challenge.includes("use_dpop_nonce")) {
        continue;  // the server asked for its nonce: one more proof, with it
      }
      if (response.status === 401 || response.status === 403) {
        const error = new Error("ticket refused (" + response.status + ")");
        error.stop = true;  // logged out: reconnecting cannot help
        throw error;
      }
      if (!response.ok) throw new Error("ticket endpoint answered " + response.status);
      return (await response.json()).ticket;
    }
  }

  async function open() {
    if (closedByUser) return;
    setState("connecting");
    let ws;
    try {
      if (opts.method === "ticket") {
        const ticket = await buyTicket();
        const sep = url.includes("?") ? "&" : "?";
        ws = new opts.WebSocket(url + sep + "ticket=" + encodeURIComponent(ticket), opts.protocols);
      } else if (opts.method === "message") {
        ws = new opts.WebSocket(url, opts.protocols);
      } else {
        const offered = opts.protocols.length ? opts.protocols : [DEFAULT_PROTOCOL];
        ws = new opts.WebSocket(url, [...offered, opts.subprotocolPrefix + (await token())]);
      }
    } catch (error) {
      if (error.stop) {
        setState("stopped", error.message);
        return;
      }
      setState("closed", String(error.message || error));
      scheduleReconnect(1006);
      return;
    }
    if (closedByUser) {
      ws.close();
      return;
    }
    socket = ws;
    ws.onopen = async () => {
      if (opts.method === "message") {
        try {
          ws.send(JSON.stringify({type: "wsauth.auth", token: await token()}));
        } catch (error) {
          ws.close();
          return;
        }
      }
      attempt = 0;
      setState("open");
    };
    ws.onmessage = (event) => {
      if (typeof event.data === "string" && CONTROL.test(event.data)) {
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch (error) {
          frame = null;
        }
        if (frame) {
          control(ws, frame);
          return;
        }
      }
      opts.onMessage(event.data, event);
    };
    ws.onclose = (event) => {
      if (socket !== ws) return;
      socket = null;
      if (closedByUser) {
        setState("closed", "closed by the client");
      } else if (STOP_CODES.has(event.code)) {
        setState("stopped", event.code);
      } else {
        setState("closed", event.code);
        scheduleReconnect(event.code);
      }
    };
  }

  async function control(ws, frame) {
    if (frame.expires_at) expiresAt = frame.expires_at;
    opts.onControl(frame);
    if (frame.type === "wsauth.expiring" && opts.getToken) {
      try {
        // A DPoP-bound socket renews with a fresh DPoP ticket, others with a fresh token.
        const refresh = opts.dpopKey && opts.method === "ticket"
          ? {type: "wsauth.refresh", ticket: await buyTicket()}
          : {type: "wsauth.refresh", token: await token()};
        if (ws.readyState === 1) ws.send(JSON.stringify(refresh));
      } catch (error) {
        // No fresh credential: the server closes with 4001 at expiry and we reconnect.
      }
    }
  }

  function scheduleReconnect(code) {
    if (closedByUser) return;
    clearTimeout(timer);
    const base = Math.min(opts.maxDelay, opts.initialDelay * 2 ** attempt);
    const delay = (code === 4429 ? Math.max(base, 5000) : base) * (0.5 + Math.random() / 2);
    attempt += 1;
    timer = setTimeout(open, delay);
  }

  open();
  return {
    send(data) {
      if (!socket || socket.readyState !== 1) return false;
      socket.send(data);
      return true;
    },
    close(code = 1000) {
      closedByUser = true;
      clearTimeout(timer);
      if (socket) socket.close(code);
      else setState("closed", "closed by the client");
    },
    reconnect() {
      attempt = 0;
      clearTimeout(timer);
      const old = socket;
      socket = null;
      if (old) old.close(1000);
      closedByUser = false;
      open();
    },
    get state() { return state; },
    get expiresAt() { return expiresAt; },
    get socket() { return socket; },
  };
}
