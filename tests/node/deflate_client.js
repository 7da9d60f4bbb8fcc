// Drives a WebSocket echo server with Node's `ws` client with permessage-deflate
// on, and prints one JSON line of results for tests/test_interop_deflate_peers.py.
//
//   node tests/node/deflate_client.js ws://127.0.0.1:PORT/ '{"serverNoContextTakeover":true}'
//
// The JSON argument is ws's perMessageDeflate option (threshold 0: every
// message is compressed). Reports the negotiated extensions (ws.extensions)
// and the server's Sec-WebSocket-Extensions answer, each echo
// (equal, type, length), and for a large compressible message how many
// bytes came in over TCP for it (far fewer than its length when the server
// compressed its echo).
'use strict';

const WebSocket = require(process.env.NODE_WS || '/usr/share/nodejs/ws');

const url = process.argv[2];
const options = Object.assign({ threshold: 0 }, JSON.parse(process.argv[3] || '{}'));
const MiB = 1 << 20;
const result = { extensions: null, answer: null, echoes: [], compressedEcho: null, close: null, errors: [] };
const deadline = setTimeout(() => { result.errors.push('timed out'); finish(); }, 60000);

function finish() {
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

const ws = new WebSocket(url, { perMessageDeflate: options, maxPayload: 64 * MiB });
const queue = [];
function expect() { return new Promise((resolve) => queue.push(resolve)); }
ws.on('message', (data, isBinary) => {
  const next = queue.shift();
  if (next) next({ data, isBinary });
  else result.errors.push('unexpected message');
});
ws.on('upgrade', (res) => { result.answer = res.headers['sec-websocket-extensions'] || null; });
ws.on('error', (err) => { result.errors.push(String(err)); });
ws.on('close', (code, reason) => { result.close = { code, reason: reason.toString() }; finish(); });

async function roundTrip(message, opts) {
  const reply = expect();
  ws.send(message, opts);
  const got = await reply;
  result.echoes.push({
    sentBinary: Buffer.isBuffer(message), gotBinary: got.isBinary, length: got.data.length,
    equal: Buffer.compare(Buffer.from(message), Buffer.from(got.data)) === 0,
  });
}

function json(n) {
  const parts = [];
  let i = 0;
  while (parts.join(',').length < n) parts.push(JSON.stringify({ id: i++, user: 'user' + (i % 17), text: 'hello world', ok: i % 3 === 0 }));
  return ('[' + parts.join(',')).slice(0, n - 1) + ']';
}

function noise(n) {
  const b = Buffer.alloc(n);
  let x = 12345;
  for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) & 0x7fffffff; b[i] = x >> 16; }
  return b;
}

ws.on('open', async () => {
  result.extensions = ws.extensions;
  try {
    await roundTrip('');
    await roundTrip('h');
    await roundTrip('κόσμε ✓ 𝄞 '.repeat(10));
    await roundTrip(json(1024));
    for (let i = 0; i < 20; i++) await roundTrip(json(100 + i));    // context takeover at work
    await roundTrip(Buffer.from([0, 255, 254, 1]), { binary: true });
    await roundTrip(noise(65536), { binary: true });                  // incompressible
    await roundTrip(json(65536));
    const before = ws._socket.bytesRead;
    await roundTrip(json(MiB));
    result.compressedEcho = { length: MiB, bytesRead: ws._socket.bytesRead - before };
    await roundTrip(Buffer.alloc(4 * MiB, 7), { binary: true });
    // a fragmented compressed message: RSV1 on the first frame only
    const reply = expect();
    ws.send(json(3000), { fin: false });
    ws.send(json(3000), { fin: true });
    const got = await reply;
    result.echoes.push({ sentBinary: false, gotBinary: got.isBinary, length: got.data.length,
                         equal: got.data.toString() === json(3000) + json(3000) });
    ws.close(1000, 'node done');
  } catch (err) {
    result.errors.push(String(err));
    finish();
  }
});
