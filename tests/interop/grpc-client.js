#!/usr/bin/env node
// Makes gRPC calls with the standard grpc-js client and prints their outcomes as JSON, so C# tests can prove
// that MirrorFS's RPC stack speaks the real gRPC wire protocol. Generic over services: the calls come as JSON.
//
// Usage: node grpc-client.js --address 127.0.0.1:PORT --proto path/to/file.proto [--token TOKEN]
//                            [--include DIR]... --calls calls.json   (or --calls - to read stdin)
//
// calls.json is an array of calls, made one after another:
//   { "name": "any label", "service": "pkg.Service", "method": "Method",
//     "kind": "unary" | "server_streaming",          (default unary)
//     "request": { ...fields as in the .proto, snake_case; bytes as base64 },
//     "timeoutMs": 200,                               (optional deadline)
//     "noToken": true,                                (optional: omit the authorization header)
//     "token": "other",                               (optional: use this token instead)
//     "metadata": { "x-key": "value" },               (optional request metadata)
//     "cancelAfterMessages": 3,                       (optional, streaming: cancel after N messages)
//     "path": "/pkg.Service/Other" }                  (optional: send to this path, e.g. an unknown method,
//                                                      with the message types of service/method)
// Output: a JSON array, one result per call:
//   { "name", "ok": bool, "code": 0-16, "codeName": "OK"|..., "details": "status message",
//     "response": {...} (unary) | "responses": [...] (streaming), "trailers": { key: value } }
// Exit code 0 when every call was made (failed calls are results, not errors); 2 for bad usage.
'use strict';

const fs = require('node:fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const CALL_TIMEOUT_MAX_MS = 60_000;
const STREAM_MESSAGES_MAX = 1_000_000;

function usage(message) {
  process.stderr.write(`grpc-client.js: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const args = { include: [] };
  for (let i = 0; i < argv.length; i++) {
    const key = argv[i];
    const value = argv[i + 1];
    if (value === undefined) usage(`missing value for ${key}`);
    i++;
    switch (key) {
      case '--address': args.address = value; break;
      case '--proto': args.proto = value; break;
      case '--token': args.token = value; break;
      case '--include': args.include.push(value); break;
      case '--calls': args.calls = value; break;
      default: usage(`unknown option ${key}`);
    }
  }
  if (!args.address || !args.proto || !args.calls) usage('--address, --proto and --calls are required');
  return args;
}

const codeNames = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

function metadataToObject(metadata) {
  const result = {};
  if (!metadata) return result;
  for (const [key, values] of Object.entries(metadata.getMap())) {
    result[key] = Buffer.isBuffer(values) ? values.toString('base64') : String(values);
  }
  return result;
}

function outcome(call, error, extra, trailers) {
  return {
    name: call.name ?? `${call.service}/${call.method}`,
    ok: !error,
    code: error ? error.code : grpc.status.OK,
    codeName: codeNames[error ? error.code : grpc.status.OK] ?? 'UNKNOWN',
    details: error ? error.details : '',
    ...extra,
    trailers: metadataToObject(error ? error.metadata : trailers),
  };
}

function makeCall(client, definition, call, defaultToken) {
  const method = definition[call.service]?.[call.method];
  if (!method) usage(`no method ${call.service}/${call.method} in the proto`);

  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(call.metadata ?? {})) metadata.add(key, value);
  const token = call.token ?? defaultToken;
  if (token && !call.noToken) metadata.add('authorization', `Bearer ${token}`);

  const timeoutMs = Math.min(call.timeoutMs ?? CALL_TIMEOUT_MAX_MS, CALL_TIMEOUT_MAX_MS);
  const options = { deadline: new Date(Date.now() + timeoutMs) };
  const request = call.request ?? {};
  const path = call.path ?? method.path;

  if ((call.kind ?? 'unary') === 'unary') {
    return new Promise((resolve) => {
      let trailers;
      const unary = client.makeUnaryRequest(path, method.requestSerialize, method.responseDeserialize,
        request, metadata, options, (error, response) => {
          // The status event can come after the callback; wait a tick for the trailers.
          setImmediate(() => resolve(outcome(call, error, error ? {} : { response }, trailers)));
        });
      unary.on('status', (status) => { trailers = status.metadata; });
    });
  }

  return new Promise((resolve) => {
    const responses = [];
    let settled = false;
    const stream = client.makeServerStreamRequest(path, method.requestSerialize, method.responseDeserialize,
      request, metadata, options);
    stream.on('data', (message) => {
      if (responses.length < STREAM_MESSAGES_MAX) responses.push(message);
      if (call.cancelAfterMessages && responses.length === call.cancelAfterMessages) stream.cancel();
    });
    stream.on('error', (error) => {
      if (!settled) { settled = true; resolve(outcome(call, error, { responses })); }
    });
    stream.on('status', (status) => {
      if (!settled && status.code === grpc.status.OK) {
        settled = true;
        resolve(outcome(call, null, { responses }, status.metadata));
      }
    });
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const callsText = args.calls === '-' ? fs.readFileSync(0, 'utf8') : fs.readFileSync(args.calls, 'utf8');
  const calls = JSON.parse(callsText);
  if (!Array.isArray(calls)) usage('--calls must hold a JSON array');

  const definition = protoLoader.loadSync(args.proto, {
    keepCase: true,
    longs: String,
    enums: String,
    bytes: String,
    defaults: true,
    oneofs: true,
    includeDirs: args.include,
  });
  const client = new grpc.Client(args.address, grpc.credentials.createInsecure());
  const results = [];
  try {
    for (const call of calls) {
      results.push(await makeCall(client, definition, call, args.token));
    }
  } finally {
    client.close();
  }
  process.stdout.write(JSON.stringify(results, null, 2) + '\n');
}

main().catch((error) => {
  process.stderr.write(`grpc-client.js failed: ${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
