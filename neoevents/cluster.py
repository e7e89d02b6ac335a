"""The nodes of a cluster: who is there, and server-side actions that reach every node.

Nodes sharing a broker (the Redis engine) talk over its control channel, in Centrifugo's control message
format (:mod:`neoevents.protocol.control_pb2`), so that neoevents and Centrifugo nodes on one Redis form one
cluster:

* Every node announces itself (``Command.node``: its counts and uptime) every :data:`ANNOUNCE_INTERVAL`
  seconds and says when it shuts down (``Command.shutdown``); the ``info`` API lists the nodes heard from
  within :data:`NODE_EXPIRY` seconds that have not shut down, this one first.
* The server API's ``disconnect``, ``unsubscribe``, ``subscribe`` and ``refresh`` act on this node's clients
  and are sent to the others, which act on theirs. A node ignores its own commands (the memory engine hands
  them straight back). Delivery is at most once, like everything on the control channel: a node that is not
  connected to Redis at that moment misses the command.
* The ``channels`` API is a survey: the request goes to every node, each answers this node alone
  (``<prefix>.node.<uid>``) with its channels and subscriber counts, and the answers are added up. It fails
  with 100 when a node known to be there does not answer within :data:`SURVEY_TIMEOUT` seconds. Surveys of
  other operations are answered "method not found" (Centrifugo's code 3), so a surveying node never waits.

Commands this node cannot decode, or does not implement (surveys, notifications, label filters), are ignored
and logged at most once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

from google.protobuf.message import DecodeError

from neoevents.engines.base import EngineError
from neoevents.exceptions import ProtocolError
from neoevents.protocol import codes, control_pb2

pb: Any = control_pb2  # generated code, untyped

if TYPE_CHECKING:
    from neoevents.node import Node

log = logging.getLogger("neoevents.cluster")

ANNOUNCE_INTERVAL: Final = 3.0
SURVEY_TIMEOUT: Final = 5.0
SURVEY_INVALID_REQUEST: Final = 2  # Centrifugo's survey reply codes
SURVEY_METHOD_NOT_FOUND: Final = 3
NODE_EXPIRY: Final = 3 * ANNOUNCE_INTERVAL + 1.0
VERSION: Final = "neoevents"


class Cluster:
    """This node's view of the cluster, and the control commands it sends and carries out."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.uid = str(uuid.uuid4())
        self.name = f"{socket.gethostname()}_{os.getpid()}"
        self._others: dict[str, tuple[dict[str, Any], float]] = {}  # uid -> (info, monotonic time heard)
        self._announcer: asyncio.Task[None] | None = None
        self._ignored_logged = 0.0
        self._survey_id = 0
        self._surveys: dict[int, tuple[dict[str, Any], asyncio.Future[None], int]] = {}  # id -> (answers, done, n)

    # ---- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._announcer = asyncio.get_running_loop().create_task(self._announce_forever())

    async def stop(self) -> None:
        """Stop announcing, and tell the other nodes this one is gone (they stop listing it and waiting for its
        survey answers)."""
        if self._announcer is None:
            return
        self._announcer.cancel()
        self._announcer = None
        with contextlib.suppress(Exception):  # Redis may be away: the others forget this node in NODE_EXPIRY
            await self._send(shutdown=pb.Shutdown())

    async def _announce_forever(self) -> None:
        while True:
            try:
                await self.node.broker.publish_control(self._command(node=self._node_message()))
            except Exception:  # Redis away (EngineError) or anything else: try again next time
                log.debug("announcing this node failed", exc_info=True)
            await asyncio.sleep(ANNOUNCE_INTERVAL)

    # ---- who is there --------------------------------------------------------------------------

    def local_info(self) -> dict[str, Any]:
        node = self.node
        info: dict[str, Any] = {
            "uid": self.uid,
            "name": self.name,
            "version": VERSION,
            "num_clients": len(node.clients),
            "num_users": len(node.users),
            "num_channels": node.hub.num_channels(),
            "num_subs": node.hub.num_subscriptions(),
            "metrics": {"interval": 60, "items": {}},
        }
        uptime = int(time.time() - node.started_at)
        if uptime:
            info["uptime"] = uptime
        return info

    def nodes(self) -> list[dict[str, Any]]:
        """This node, then every other node heard from within :data:`NODE_EXPIRY` seconds."""
        now = time.monotonic()
        for uid in [uid for uid, (_, heard) in self._others.items() if now - heard > NODE_EXPIRY]:
            del self._others[uid]
        return [self.local_info(), *(info for info, _ in self._others.values())]

    def _node_message(self) -> Any:
        info = self.local_info()
        return pb.Node(
            uid=self.uid,
            name=self.name,
            version=VERSION,
            num_clients=info["num_clients"],
            num_users=info["num_users"],
            num_channels=info["num_channels"],
            num_subs=info["num_subs"],
            uptime=info.get("uptime", 0),
            metrics=pb.Metrics(interval=60),
        )

    # ---- server-side actions -------------------------------------------------------------------

    async def disconnect(
        self, user: str, disconnect: codes.Disconnect, client: str = "", whitelist: tuple[str, ...] = ()
    ) -> None:
        self.node.disconnect_user(user, disconnect, client, whitelist)
        await self._send(
            disconnect=pb.Disconnect(
                user=user,
                client=client,
                whitelist=list(whitelist),
                code=disconnect.code,
                reason=disconnect.reason,
                reconnect=disconnect.reconnect,
            )
        )

    async def unsubscribe(self, user: str, channel: str, client: str = "") -> None:
        await self.node.unsubscribe_user(user, channel, client)
        unsubscribe = codes.UNSUBSCRIBE_SERVER
        await self._send(
            unsubscribe=pb.Unsubscribe(
                user=user, channel=channel, client=client, code=unsubscribe.code, reason=unsubscribe.reason
            )
        )

    async def subscribe(
        self, user: str, channel: str, client: str = "", *, info: bytes = b"", data: bytes = b""
    ) -> None:
        await self.node.subscribe_user(user, channel, client, info=info, data=data)
        ns = self.node.namespace_for(channel)
        assert ns is not None  # subscribe_user refuses unknown channels
        await self._send(
            subscribe=pb.Subscribe(
                user=user,
                channel=channel,
                client=client,
                channel_info=info,
                data=data,
                emit_presence=ns.presence,
                emit_join_leave=ns.join_leave,
                push_join_leave=ns.force_push_join_leave,
                position=ns.force_positioning,
                recover=ns.force_recovery,
            )
        )

    async def refresh(self, user: str, client: str = "", expired: bool = False, expire_at: int = 0) -> None:
        self.node.refresh_user(user, client, expired, expire_at)
        await self._send(refresh=pb.Refresh(user=user, client=client, expired=expired, expire_at=expire_at))

    def _command(self, **fields: Any) -> bytes:
        return bytes(pb.Command(uid=self.uid, **fields).SerializeToString())

    async def _send(self, **fields: Any) -> None:
        await self.node.broker.publish_control(self._command(**fields))

    # ---- surveys -------------------------------------------------------------------------------

    def local_channels(self, pattern: str = "") -> dict[str, int]:
        found = self.node.hub.channels()
        if pattern:
            found = {ch: n for ch, n in found.items() if fnmatch.fnmatchcase(ch, pattern)}
        return found

    async def channels(self, pattern: str = "") -> dict[str, int]:
        """Channels with subscribers on any node, and how many (raises 100 when a node does not answer)."""
        channels = self.local_channels(pattern)
        others = len(self.nodes()) - 1
        if others <= 0:
            return channels
        self._survey_id += 1
        survey_id = self._survey_id
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        answers: dict[str, Any] = {}
        self._surveys[survey_id] = (answers, done, others)
        try:
            request = pb.ChannelsRequest(pattern=pattern).SerializeToString()
            await self._send(survey_request=pb.SurveyRequest(id=survey_id, op="channels", data=request))
            async with asyncio.timeout(SURVEY_TIMEOUT):
                await done
        except (TimeoutError, EngineError) as exc:
            log.warning("channels survey: %d of %d other nodes answered (%s)", len(answers), others, exc or "timeout")
            raise ProtocolError(codes.ERROR_INTERNAL) from exc
        finally:
            del self._surveys[survey_id]
        for uid, response in answers.items():
            if response.code:
                log.warning("channels survey: node %s answered with code %d", uid, response.code)
                raise ProtocolError(codes.ERROR_INTERNAL)
            for channel, info in pb.ChannelsResult.FromString(response.data).channels.items():
                channels[channel] = channels.get(channel, 0) + info.num_clients
        return channels

    def _answer_survey(self, asker: str, request: Any) -> None:
        response = pb.SurveyResponse(id=request.id)
        if request.op != "channels":
            response.code = SURVEY_METHOD_NOT_FOUND
        else:
            try:
                pattern = pb.ChannelsRequest.FromString(request.data).pattern
            except DecodeError:
                response.code = SURVEY_INVALID_REQUEST
            else:
                result = pb.ChannelsResult()
                for channel, count in self.local_channels(pattern).items():
                    result.channels[channel].num_clients = count
                response.data = result.SerializeToString()
        self.node.spawn(self.node.broker.publish_control(self._command(survey_response=response), node_id=asker))

    def _survey_answered(self, uid: str, response: Any) -> None:
        survey = self._surveys.get(response.id)
        if survey is None:
            return  # too late, or not ours
        answers, done, expected = survey
        answers[uid] = response
        if len(answers) >= expected and not done.done():
            done.set_result(None)

    # ---- commands from the other nodes ---------------------------------------------------------

    def handle(self, data: bytes) -> None:
        """Carry out a command from another node (the broker's control channel)."""
        try:
            cmd = pb.Command.FromString(data)
        except DecodeError:
            self._ignored("undecodable control message")
            return
        if cmd.uid == self.uid:
            return
        node = self.node
        if cmd.HasField("node"):
            self._heard(cmd.node)
        elif cmd.HasField("shutdown"):
            self._others.pop(cmd.uid, None)
        elif cmd.HasField("survey_request"):
            self._answer_survey(cmd.uid, cmd.survey_request)
        elif cmd.HasField("survey_response"):
            self._survey_answered(cmd.uid, cmd.survey_response)
        elif cmd.HasField("disconnect"):
            d = cmd.disconnect
            if self._unsupported(d):
                return
            reason = d.reason or codes.DISCONNECT_FORCE_NO_RECONNECT.reason
            disconnect = codes.Disconnect(d.code, reason) if d.code else codes.DISCONNECT_FORCE_NO_RECONNECT
            node.disconnect_user(d.user, disconnect, d.client, tuple(d.whitelist))
        elif cmd.HasField("unsubscribe"):
            u = cmd.unsubscribe
            if not self._unsupported(u):
                node.spawn(node.unsubscribe_user(u.user, u.channel, u.client))
        elif cmd.HasField("subscribe"):
            s = cmd.subscribe
            if not self._unsupported(s) and node.namespace_for(s.channel) is not None:
                node.spawn(node.subscribe_user(s.user, s.channel, s.client, info=s.channel_info, data=s.data))
        elif cmd.HasField("refresh"):
            r = cmd.refresh
            if not self._unsupported(r):
                node.refresh_user(r.user, r.client, r.expired, r.expire_at)

    def _heard(self, n: Any) -> None:
        info: dict[str, Any] = {
            "uid": n.uid,
            "name": n.name,
            "version": n.version,
            "num_clients": n.num_clients,
            "num_users": n.num_users,
            "num_channels": n.num_channels,
            "num_subs": n.num_subs,
            "metrics": {"interval": n.metrics.interval, "items": dict(n.metrics.items)},
        }
        if n.uptime:
            info["uptime"] = n.uptime
        self._others[n.uid] = (info, time.monotonic())

    def _unsupported(self, msg: Any) -> bool:
        """Session- or label-targeted and all-users commands are not carried out here."""
        if msg.session or msg.all_users or msg.HasField("label_filter"):
            self._ignored("control command targeting sessions, labels or all users")
            return True
        return False

    def _ignored(self, what: str) -> None:
        now = time.monotonic()
        if now - self._ignored_logged > 60:
            self._ignored_logged = now
            log.warning("ignored a %s from another node", what)
