'use strict';
// The greeter example service in Node with amqplib: the same service as
// ../greeter (Go), answering the same calls through Herald by the RPC
// convention of docs/rpc.md, with nothing of Herald's SDK.
//
//   npm install && AMQP_URL=amqp://guest:guest@localhost:5672/ node greeter.js
//
// It prints one JSON line {"msg":"serving",...} once it consumes, and on
// SIGINT/SIGTERM stops taking requests, finishes those running and exits 0.
// It does not reconnect: if the broker goes, it exits 1 for its supervisor
// to restart it.

const amqp = require('amqplib');
const crypto = require('node:crypto');

const url = process.env.AMQP_URL || process.env.HERALD_URL || 'amqp://guest:guest@localhost:5672/';
const SERVICE = 'greeter';
const QUEUE = `rpc.${SERVICE}`;
const CONCURRENCY = Number(process.env.CONCURRENCY || 16);

// RpcError carries a status name (gRPC's) to the caller.
class RpcError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function safeInt(v, name) {
  if (v === undefined) return 0;
  if (!Number.isSafeInteger(v)) throw new RpcError('INVALID_ARGUMENT', `${name} is not an integer`);
  return v;
}

const methods = {
  async Greet(req) {
    if (typeof req.name !== 'string' || req.name === '') {
      throw new RpcError('INVALID_ARGUMENT', 'name is required');
    }
    return { greeting: `Hello, ${req.name}!`, by: 'node' };
  },
  async Add(req) {
    const sum = safeInt(req.a, 'a') + safeInt(req.b, 'b');
    // JavaScript numbers are exact to 2^53; Go's int64 goes further.
    if (!Number.isSafeInteger(sum)) throw new RpcError('OUT_OF_RANGE', `${req.a} + ${req.b} overflows`);
    return { sum };
  },
};

// deadlineOf reads x-deadline (Unix ms) whichever numeric field type the
// caller used; undefined when there is none.
function deadlineOf(headers) {
  const v = headers && headers['x-deadline'];
  if (v === undefined || v === null) return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : NaN;
}

async function main() {
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  // The prefetch is this instance's concurrency limit.
  await ch.prefetch(CONCURRENCY);
  // Non-durable, auto-delete, not exclusive: shared by every instance,
  // gone with the last one (callers then get "no responders" at once).
  await ch.assertQueue(QUEUE, { durable: false, autoDelete: true, exclusive: false });

  const id = crypto.randomUUID();
  const running = new Set();

  function reply(msg, status, error, body) {
    const headers = { 'x-rpc-status': status };
    if (error !== undefined) headers['x-rpc-error'] = error;
    // Default exchange, routing key = reply_to (amq.rabbitmq.reply-to.*).
    ch.sendToQueue(msg.properties.replyTo, body, {
      correlationId: msg.properties.correlationId,
      contentType: 'application/json',
      headers,
    });
    ch.ack(msg);
  }

  async function handle(msg) {
    const p = msg.properties;
    if (!p.replyTo || !p.type) {
      // Nobody to answer, or nothing to run: log and drop.
      console.error(`dropped a request without ${p.replyTo ? 'type' : 'reply_to'}`);
      ch.ack(msg);
      return;
    }
    const deadline = deadlineOf(p.headers);
    if (Number.isNaN(deadline)) {
      reply(msg, 'INVALID_ARGUMENT', 'x-deadline is not Unix milliseconds', Buffer.alloc(0));
      return;
    }
    if (deadline !== undefined && Date.now() >= deadline) {
      // The caller has given up: do not run it, do not answer.
      ch.ack(msg);
      return;
    }
    try {
      const dot = p.type.lastIndexOf('.');
      const name = p.type.slice(dot + 1);
      if (dot <= 0 || p.type.slice(0, dot) !== SERVICE || !Object.hasOwn(methods, name)) {
        throw new RpcError('UNIMPLEMENTED', `${SERVICE} has no method "${p.type}"`);
      }
      if (p.contentType && !p.contentType.startsWith('application/json')) {
        throw new RpcError('INVALID_ARGUMENT', `unsupported content type "${p.contentType}"`);
      }
      let req = {};
      if (msg.content.length > 0) {
        try {
          req = JSON.parse(msg.content.toString('utf8'));
        } catch (e) {
          throw new RpcError('INVALID_ARGUMENT', `malformed application/json request: ${e.message}`);
        }
      }
      if (req === null || typeof req !== 'object' || Array.isArray(req)) {
        throw new RpcError('INVALID_ARGUMENT', 'the request is not a JSON object');
      }
      const out = await methods[name](req);
      reply(msg, 'OK', undefined, Buffer.from(JSON.stringify(out)));
    } catch (e) {
      if (!(e instanceof RpcError)) console.error('handler failed:', e);
      const status = e instanceof RpcError ? e.status : 'INTERNAL';
      reply(msg, status, e.message, Buffer.alloc(0));
    }
  }

  const { consumerTag } = await ch.consume(
    QUEUE,
    (msg) => {
      if (msg === null) return; // cancelled by the broker (queue deleted)
      const job = handle(msg).finally(() => running.delete(job));
      running.add(job);
    },
    {
      noAck: false,
      consumerTag: `rpc.${SERVICE}.${id}`,
      // The instance announces itself in its consume arguments.
      arguments: {
        'x-service-name': SERVICE,
        'x-service-version': '1.0.0',
        'x-service-id': id,
        'x-service-description': 'says hello and adds numbers',
        'x-service-endpoints': Object.keys(methods),
        'x-service-metadata': { language: 'node' },
      },
    },
  );
  console.log(JSON.stringify({ msg: 'serving', service: SERVICE, id, queue: QUEUE }));

  let stopping = false;
  conn.on('close', () => {
    if (!stopping) {
      console.error('connection to the broker lost');
      process.exit(1);
    }
  });
  async function drain() {
    if (stopping) return;
    stopping = true;
    await ch.cancel(consumerTag); // stop taking requests
    await Promise.allSettled([...running]); // finish the running ones
    await conn.close();
    process.exit(0);
  }
  process.on('SIGINT', drain);
  process.on('SIGTERM', drain);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
