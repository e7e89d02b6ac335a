// Floor server on Node's `ws`: see bench/floors/__init__.py. Usage: node node_ws_floor.js PORT
"use strict";
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2]);
const channels = new Map();

function serverFrame(payload) {
  const n = payload.length;
  let head;
  if (n < 126) head = Buffer.from([0x81, n]);
  else if (n < 65536) { head = Buffer.alloc(4); head[0] = 0x81; head[1] = 126; head.writeUInt16BE(n, 2); }
  else { head = Buffer.alloc(10); head[0] = 0x81; head[1] = 127; head.writeBigUInt64BE(BigInt(n), 2); }
  return Buffer.concat([head, payload]);
}

const wss = new WebSocketServer({ host: "127.0.0.1", port, backlog: 4096, perMessageDeflate: false, clientTracking: false });
wss.on("connection", (ws, req) => {
  const url = req.url || "";
  if (url === "/pub") {
    ws.on("message", (data) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data);
      const i = buf.indexOf(10);
      const subs = channels.get(buf.toString("latin1", 0, i));
      if (!subs) return;
      const frame = serverFrame(buf.subarray(i + 1));
      for (const sock of subs) sock.write(frame);
    });
  } else if (url.startsWith("/sub/")) {
    const channel = decodeURIComponent(url.slice(5));
    let subs = channels.get(channel);
    if (!subs) { subs = new Set(); channels.set(channel, subs); }
    const sock = ws._socket;
    subs.add(sock);
    ws.on("close", () => subs.delete(sock));
  } else {
    ws.close(1008);
  }
});
