// Recovery after the server dropped the connection.
//   The client subscribes to cfg.channel (history large enough) and cfg.tiny_channel
//   (history smaller than what is missed), both with recovery forced by the namespace, and
//   receives one publication in each. Then new connections are cut off (see
//   gatedWebSocket) and the server API disconnects the user with the reconnecting code
//   cfg.disconnect_code. While the client is disconnected the API publishes cfg.missed
//   publications into each channel; then the client may reconnect. cfg.channel must report
//   recovered=true and deliver every missed publication once, in order; cfg.tiny_channel
//   must report recovered=false.
import {
  api, codec, emit, gatedWebSocket, loadCentrifuge, nextEvent, publication, run, until,
} from './lib.mjs';

run(async (cfg) => {
  const Centrifuge = await loadCentrifuge(cfg.protobuf);
  const { decode } = codec(cfg.protobuf);
  const gate = gatedWebSocket();
  const client = new Centrifuge(cfg.url, {
    websocket: gate.WebSocket,
    token: cfg.token,
    minReconnectDelay: 50,
    maxReconnectDelay: 300,
  });
  client.on('connecting', (ctx) => emit('connecting', { code: ctx.code, reason: ctx.reason }));
  client.on('connected', () => emit('connected'));
  client.on('disconnected', (ctx) => emit('disconnected', { code: ctx.code, reason: ctx.reason }));

  const received = {};
  const subscribedCount = {};
  const subs = {};
  for (const channel of [cfg.channel, cfg.tiny_channel]) {
    received[channel] = [];
    subscribedCount[channel] = 0;
    const sub = client.newSubscription(channel);
    sub.on('publication', (ctx) => received[channel].push(publication(ctx, decode)));
    sub.on('subscribed', (ctx) => {
      subscribedCount[channel] += 1;
      emit('subscribed', {
        channel,
        recoverable: ctx.recoverable,
        was_recovering: ctx.wasRecovering,
        recovered: ctx.recovered,
        offset: ctx.streamPosition ? Number(ctx.streamPosition.offset) : null,
        epoch: ctx.streamPosition ? ctx.streamPosition.epoch : null,
      });
    });
    sub.on('unsubscribed', (ctx) => emit('unsubscribed', { channel, code: ctx.code }));
    subs[channel] = sub;
  }
  const connected = nextEvent(client, 'connected');
  client.connect();
  await connected;
  for (const sub of Object.values(subs)) {
    sub.subscribe();
    await sub.ready(5000);
  }
  for (const channel of Object.keys(subs)) {
    await api(cfg, 'publish', { channel, data: { n: 0 } });
  }
  await until(() => Object.values(received).every((pubs) => pubs.length === 1), 'the first publications');

  gate.open = false;
  const dropped = nextEvent(client, 'connecting', (ctx) => ctx.code === cfg.disconnect_code);
  await api(cfg, 'disconnect', {
    user: cfg.user, disconnect: { code: cfg.disconnect_code, reason: 'test reconnect' },
  });
  await dropped;
  for (let n = 1; n <= cfg.missed; n++) {
    for (const channel of Object.keys(subs)) {
      await api(cfg, 'publish', { channel, data: { n } });
    }
  }
  const socketsWhileDown = gate.created;
  gate.open = true;
  await until(
    () => Object.values(subscribedCount).every((count) => count === 2),
    'both subscriptions to subscribe again',
  );
  await until(() => received[cfg.channel].length === cfg.missed + 1, 'the missed publications');
  // One more live publication: nothing is delivered twice and it comes after the missed ones.
  await api(cfg, 'publish', { channel: cfg.channel, data: { n: cfg.missed + 1 } });
  await until(() => received[cfg.channel].length >= cfg.missed + 2, 'a live publication');
  emit('received', { received, sockets_while_down: socketsWhileDown, sockets: gate.created });
  client.disconnect();
}, 30000);
