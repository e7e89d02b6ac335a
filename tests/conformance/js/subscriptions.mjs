// Server-side subscriptions and subscription tokens.
//   alice's and bob's connection tokens carry cfg.server_channel in their `channels`
//   claim: the client emits server-side subscribed, join and publication events.
//   alice subscribes to cfg.secure_channel (a namespace that requires a subscription
//   token) with getToken: subscribed; to cfg.secure_channel_denied without a token:
//   unsubscribed with the server's error code.
import {
  api, clientInfo, codec, emit, loadCentrifuge, nextEvent, publication, run, until,
} from './lib.mjs';

run(async (cfg) => {
  const Centrifuge = await loadCentrifuge(cfg.protobuf);
  const { decode } = codec(cfg.protobuf);
  const WebSocket = (await import('ws')).default;

  const alice = new Centrifuge(cfg.url, { websocket: WebSocket, token: cfg.tokens.alice });
  const serverSubscribed = [];
  const serverPubs = [];
  const serverJoins = [];
  alice.on('subscribed', (ctx) => {
    serverSubscribed.push(ctx.channel);
    emit('server_subscribed', {
      channel: ctx.channel, recoverable: ctx.recoverable, positioned: ctx.positioned,
    });
  });
  alice.on('publication', (ctx) => serverPubs.push(publication(ctx, decode)));
  alice.on('join', (ctx) => serverJoins.push({ channel: ctx.channel, ...clientInfo(ctx.info, decode) }));
  const connected = nextEvent(alice, 'connected');
  alice.connect();
  await connected;
  await until(() => serverSubscribed.includes(cfg.server_channel), 'the server-side subscription');

  const bob = new Centrifuge(cfg.url, { websocket: WebSocket, token: cfg.tokens.bob });
  const bobConnected = nextEvent(bob, 'connected');
  bob.connect();
  await bobConnected;
  await until(() => serverJoins.some((j) => j.user === cfg.users.bob), "bob's join (server-side)");
  emit('server_joins', { joins: serverJoins });

  await api(cfg, 'publish', { channel: cfg.server_channel, data: { server: true } });
  await until(() => serverPubs.length > 0, 'a server-side publication');
  emit('server_publications', { pubs: serverPubs });

  const subTokenCalls = [];
  const secure = alice.newSubscription(cfg.secure_channel, {
    getToken: async (ctx) => {
      subTokenCalls.push(ctx.channel);
      return cfg.sub_token;
    },
  });
  const secureSubscribed = nextEvent(secure, 'subscribed');
  secure.subscribe();
  await secureSubscribed;
  emit('secure_subscribed', { channel: cfg.secure_channel, token_calls: subTokenCalls });
  const securePublication = nextEvent(secure, 'publication');
  await api(cfg, 'publish', { channel: cfg.secure_channel, data: { secret: 1 } });
  const securePub = await securePublication;
  emit('secure_publication', publication(securePub, decode));

  const denied = alice.newSubscription(cfg.secure_channel_denied);
  const deniedUnsubscribed = nextEvent(denied, 'unsubscribed');
  denied.subscribe();
  const deniedCtx = await deniedUnsubscribed;
  emit('denied_unsubscribed', { code: deniedCtx.code, reason: deniedCtx.reason });

  alice.disconnect();
  bob.disconnect();
}, 30000);
