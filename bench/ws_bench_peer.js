// bench/websocket.lua's node `ws` peer (NODE_PATH: the ws package).
//   node ws_bench_peer.js serve CERT KEY N      wss sink: after N messages, sends "done"
//   node ws_bench_peer.js send PORT CA N SIZE   sends N messages of SIZE bytes, waits for "done"
//   node ws_bench_peer.js chat PORT CA CLIENTS SECONDS   clients that each send 64 B a second
'use strict';
const fs = require('fs');
const WebSocket = require('ws');
const [mode, ...a] = process.argv.slice(2);
const now = () => Number(process.hrtime.bigint()) / 1e9;
if (mode === 'serve') {
  const n = +a[2];
  const server = require('https').createServer({ cert: fs.readFileSync(a[0]), key: fs.readFileSync(a[1]) });
  const wss = new WebSocket.Server({ server, perMessageDeflate: false, maxPayload: 1 << 24 });
  wss.on('connection', (ws) => {
    let got = 0;
    ws.on('message', () => { if (++got === n) ws.send('done'); });
  });
  server.listen(0, '127.0.0.1', () => console.log('READY ' + server.address().port));
} else if (mode === 'send') {
  const [port, ca, n, size] = [+a[0], a[1], +a[2], +a[3]];
  const ws = new WebSocket('wss://localhost:' + port + '/', { ca: fs.readFileSync(ca), perMessageDeflate: false, maxPayload: 1 << 24 });
  const msg = Buffer.alloc(size, 120);
  let t0, sent = 0;
  const pump = () => {
    while (sent < n && ws.bufferedAmount < (4 << 20)) { ws.send(msg); sent++; }
    if (sent < n) setImmediate(pump);
  };
  ws.on('open', () => { t0 = now(); pump(); });
  ws.on('message', () => { console.log('RESULT seconds ' + (now() - t0)); ws.close(); process.exit(0); });
  ws.on('error', (e) => { console.log('ERROR ' + e.message); process.exit(1); });
} else if (mode === 'chat') {
  const [port, ca, clients, seconds] = [+a[0], fs.readFileSync(a[1]), +a[2], +a[3]];
  let open = 0, received = 0, sent = 0;
  const msg = 'x'.repeat(64);
  const list = [];
  for (let i = 0; i < clients; i++) {
    const ws = new WebSocket((process.env.WSBENCH_PLAIN ? 'ws' : 'wss') + '://localhost:' + port + '/', { ca, perMessageDeflate: false });
    ws.on('open', () => { if (++open === clients) start(); });
    ws.on('message', () => received++);
    ws.on('error', (e) => console.log('ERROR ' + e.message));
    list.push(ws);
  }
  function start() {
    console.log('ALLOPEN');
    list.forEach((ws, i) => {
      setTimeout(() => {
        const t = setInterval(() => { if (ws.readyState === 1) { ws.send(msg); sent++; } }, 1000);
        setTimeout(() => clearInterval(t), seconds * 1000);
      }, (i * 1000) / clients);
    });
    setTimeout(() => { console.log('RESULT sent ' + sent); console.log('RESULT received ' + received);
      list.forEach((ws) => ws.terminate()); process.exit(0); }, seconds * 1000 + 1500);
  }
}
