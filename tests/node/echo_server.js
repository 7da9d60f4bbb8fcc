// A Node `ws` echo server for fastsock's client to talk to.
//
//   node tests/node/echo_server.js [port]
//
// Echoes every message with its type; "close-me" makes the server close with
// 4001 "asked to"; "fragments-please" is answered with a text message in
// three frames. Prints "node-ws echo listening on ws://127.0.0.1:PORT" when ready.
'use strict';

const WebSocket = require(process.env.NODE_WS || '/usr/share/nodejs/ws');

const server = new WebSocket.Server({
  host: '127.0.0.1', port: Number(process.argv[2] || 0),
  perMessageDeflate: false, maxPayload: 64 << 20,
});
server.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.toString() === 'close-me') {
      ws.close(4001, 'asked to');
    } else if (!isBinary && data.toString() === 'fragments-please') {
      ws.send('frag', { fin: false });
      ws.send('men', { fin: false });
      ws.send('ted!', { fin: true });
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});
server.on('listening', () => {
  const { port } = server.address();
  process.stdout.write(`node-ws echo listening on ws://127.0.0.1:${port}\n`);
});
function stop() { server.close(); for (const c of server.clients) c.terminate(); process.exit(0); }
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
