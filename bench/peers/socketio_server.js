// socket.io 4.8 peer of the benchmark suite. Usage: node socketio_server.js PORT
//
// Subscribers connect to /socket.io/?EIO=4&transport=websocket&room=<room> and join that room on connect.
// Publications arrive on a /pub WebSocket: each frame holds one or more "<room>\n<JSON payload>" pairs
// (lines alternate) and every payload is emitted to its room as the event "pub" (decoded, so socket.io
// encodes it once per room emit, as an application emitting an object would).
"use strict";
const http = require("http");
const { Server } = require("socket.io");
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2]);
const server = http.createServer();
const io = new Server(server, {
  transports: ["websocket"],
  perMessageDeflate: false,
  httpCompression: false,
  serveClient: false,
  destroyUpgrade: false, // leave /pub upgrades to the ws server below
  connectTimeout: 45000,
});

io.on("connection", (socket) => {
  const room = socket.handshake.query.room;
  if (typeof room === "string" && room) socket.join(room);
});

const pub = new WebSocketServer({ noServer: true, perMessageDeflate: false });
pub.on("connection", (ws) => {
  ws.on("message", (data) => {
    const lines = data.toString("utf8").split("\n");
    for (let i = 0; i + 1 < lines.length; i += 2) io.to(lines[i]).emit("pub", JSON.parse(lines[i + 1]));
  });
});
server.on("upgrade", (req, socket, head) => {
  if (req.url === "/pub") pub.handleUpgrade(req, socket, head, (ws) => pub.emit("connection", ws, req));
});

server.listen({ host: "127.0.0.1", port, backlog: 4096 });
