// Two clients in one channel of a namespace with presence, join/leave, history and client
// publishing (cfg.channel), and a channel of a namespace without client publishing
// (cfg.readonly_channel).
//   alice subscribes with join/leave events, bob joins: alice sees bob's join;
//   bob publishes from the client, the server API publishes with tags: both receive both;
//   presence and presence stats; history with limit, since and reverse;
//   publishing into cfg.readonly_channel is denied (103); bob unsubscribes: alice sees
//   his leave.
import {
  api, clientInfo, codec, emit, loadCentrifuge, nextEvent, outcome, publication, run, until,
} from './lib.mjs';

function historyView(result, decode) {
  return {
    offset: Number(result.offset),
    epoch: result.epoch,
    pubs: result.publications.map((p) => ({ data: decode(p.data), offset: Number(p.offset) })),
  };
}

run(async (cfg) => {
  const Centrifuge = await loadCentrifuge(cfg.protobuf);
  const { encode, decode } = codec(cfg.protobuf);
  const WebSocket = (await import('ws')).default;

  const clients = {};
  const subs = {};
  const received = { alice: [], bob: [] };
  for (const name of ['alice', 'bob']) {
    const client = new Centrifuge(cfg.url, { websocket: WebSocket, token: cfg.tokens[name] });
    client.on('error', (ctx) => emit('error', { who: name, type: ctx.type, code: ctx.error.code }));
    const connected = nextEvent(client, 'connected');
    client.connect();
    const ctx = await connected;
    emit('connected', { who: name, client: ctx.client });
    clients[name] = client;
  }

  const joins = [];
  const leaves = [];
  for (const name of ['alice', 'bob']) {
    const sub = clients[name].newSubscription(cfg.channel, { joinLeave: name === 'alice' });
    sub.on('publication', (ctx) => received[name].push(publication(ctx, decode)));
    if (name === 'alice') {
      sub.on('join', (ctx) => joins.push(clientInfo(ctx.info, decode)));
      sub.on('leave', (ctx) => leaves.push(clientInfo(ctx.info, decode)));
    }
    const subscribed = nextEvent(sub, 'subscribed');
    sub.subscribe();
    const ctx = await subscribed;
    emit('subscribed', {
      who: name, channel: ctx.channel, recoverable: ctx.recoverable, positioned: ctx.positioned,
    });
    subs[name] = sub;
  }
  await until(() => joins.some((j) => j.user === cfg.users.bob), "bob's join");
  emit('joins', { joins });

  const clientPub = await outcome(subs.bob.publish(encode({ from: 'bob', n: 1 })));
  emit('client_publish', { ok: clientPub.ok, code: clientPub.code });
  await api(cfg, 'publish', { channel: cfg.channel, data: { from: 'api', n: 2 }, tags: { kind: 'api' } });
  await until(() => received.alice.length >= 2 && received.bob.length >= 2, 'two publications each');
  emit('publications', { received });

  const presence = await subs.alice.presence();
  emit('presence', { clients: Object.values(presence.clients).map((c) => clientInfo(c, decode)) });
  const stats = await subs.alice.presenceStats();
  emit('presence_stats', { num_clients: stats.numClients, num_users: stats.numUsers });

  for (let n = 3; n <= 5; n++) {
    await api(cfg, 'publish', { channel: cfg.channel, data: { from: 'api', n } });
  }
  await until(() => received.alice.length >= 5, 'five publications');
  const all = historyView(await subs.alice.history({ limit: 10 }), decode);
  emit('history', { name: 'limit10', ...all });
  emit('history', { name: 'limit2', ...historyView(await subs.alice.history({ limit: 2 }), decode) });
  emit('history', {
    name: 'reverse2', ...historyView(await subs.alice.history({ limit: 2, reverse: true }), decode),
  });
  emit('history', {
    name: 'since2',
    ...historyView(await subs.alice.history({ limit: 10, since: { offset: 2, epoch: all.epoch } }), decode),
  });
  emit('history', { name: 'position', ...historyView(await subs.alice.history({ limit: 0 }), decode) });

  const denied = await outcome(clients.alice.publish(cfg.readonly_channel, encode({ no: true })));
  emit('readonly_publish', { ok: denied.ok, code: denied.code });
  const rpc = await outcome(clients.alice.rpc('anything', encode({})));
  emit('rpc', { ok: rpc.ok, code: rpc.code });

  const unsubscribed = nextEvent(subs.bob, 'unsubscribed');
  subs.bob.unsubscribe();
  const unsubCtx = await unsubscribed;
  emit('unsubscribed', { who: 'bob', code: unsubCtx.code });
  await until(() => leaves.some((l) => l.user === cfg.users.bob), "bob's leave");
  emit('leaves', { leaves });

  clients.alice.disconnect();
  clients.bob.disconnect();
}, 30000);
