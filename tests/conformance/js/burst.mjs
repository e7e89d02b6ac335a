// A burst to a busy channel: cfg.clients clients subscribe to cfg.channel, one server API batch publishes
// cfg.count publications (they reach the subscribers within one event-loop iteration, so several travel in
// each WebSocket frame). Each client reports what it received and how many times it connected.
import {
  api, codec, emit, loadCentrifuge, nextEvent, publication, run, until,
} from './lib.mjs';

run(async (cfg) => {
  const Centrifuge = await loadCentrifuge(cfg.protobuf);
  const { decode } = codec(cfg.protobuf);
  const WebSocket = (await import('ws')).default;

  const received = [];
  const connects = [];
  const errors = [];
  for (let k = 0; k < cfg.tokens.length; k++) {
    const client = new Centrifuge(cfg.url, { websocket: WebSocket, token: cfg.tokens[k] });
    received.push([]);
    connects.push(0);
    client.on('connected', () => { connects[k] += 1; });
    client.on('error', (ctx) => errors.push({ who: k, type: ctx.type, code: ctx.error.code }));
    const connected = nextEvent(client, 'connected');
    client.connect();
    await connected;
    const sub = client.newSubscription(cfg.channel);
    sub.on('publication', (ctx) => received[k].push(publication(ctx, decode)));
    const subscribed = nextEvent(sub, 'subscribed');
    sub.subscribe();
    await subscribed;
  }
  const commands = [];
  for (let n = 0; n < cfg.count; n++) {
    commands.push({ publish: { channel: cfg.channel, data: { n } } });
  }
  await api(cfg, 'batch', { commands });
  await until(() => received.every((pubs) => pubs.length >= cfg.count), 'every publication');
  emit('received', { received, connects, errors });
});
