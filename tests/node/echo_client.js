// Drives a WebSocket echo server with Node's `ws` client and prints one JSON
// line of results for tests/test_interop_node_ws.py to check.
//
//   node tests/node/echo_client.js ws://127.0.0.1:PORT/ [--big]
//
// Steps, in order: text (ASCII, non-ASCII, empty), binary, a text message
// sent in three fragments, a ping with payload, optionally 16 MiB text and
// binary messages (--big), then a close with code 4000.
'use strict';

const WebSocket = require(process.env.NODE_WS || '/usr/share/nodejs/ws');

const url = process.argv[2];
const big = process.argv.includes('--big');
const MiB = 1 << 20;
const result = { echoes: [], pong: null, close: null, errors: [] };
const deadline = setTimeout(() => {
  result.errors.push('timed out');
  finish();
}, 60000);

function finish() {
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 64 * MiB });
const queue = [];
function expect() { return new Promise((resolve) => queue.push(resolve)); }

ws.on('message', (data, isBinary) => {
  const next = queue.shift();
  if (next) next({ data, isBinary });
  else result.errors.push('unexpected message');
});
ws.on('error', (err) => { result.errors.push(String(err)); });
ws.on('close', (code, reason) => {
  result.close = { code, reason: reason.toString() };
  finish();
});

function summary(sent, got) {
  return {
    sentBinary: Buffer.isBuffer(sent), gotBinary: got.isBinary,
    equal: Buffer.compare(Buffer.from(sent), Buffer.from(got.data)) === 0,
    length: got.data.length,
  };
}

async function roundTrip(message, options) {
  const reply = expect();
  ws.send(message, options);
  result.echoes.push(summary(message, await reply));
}

ws.on('open', async () => {
  try {
    await roundTrip('hello');
    await roundTrip('κόσμε ✓ 𝄞');
    await roundTrip('');
    await roundTrip(Buffer.from([0, 255, 254, 1]), { binary: true });
    // one text message in three frames: fin=false, fin=false, fin=true
    const reply = expect();
    ws.send('frag', { fin: false });
    ws.send('men', { fin: false });
    ws.send('ted', { fin: true });
    result.echoes.push(summary('fragmented', await reply));
    const pong = new Promise((resolve) => ws.once('pong', resolve));
    ws.ping(Buffer.from('node ping'));
    result.pong = (await pong).toString();
    if (big) {
      await roundTrip('é'.repeat(8 * MiB));
      await roundTrip(Buffer.alloc(16 * MiB, 7), { binary: true });
    }
    ws.close(4000, 'node done');
  } catch (err) {
    result.errors.push(String(err));
    finish();
  }
});
