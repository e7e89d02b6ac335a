// Command stormgen is the benchmark's connect-storm client. It opens many WebSocket connections as fast as it
// can, each set up with the target's own protocol exactly as the Python load generator does it
// (bench/loadgen.py, Subscriber), and holds them open, answering pings, until it is told to close them.
//
// Usage: stormgen FILE
//
// FILE (written by bench/stormgen.py) describes the connections: one JSON header line
//
//	{"proto": "centrifugo" | "nats" | "engineio" | "raw", "host": "127.0.0.1", "port": 8000,
//	 "concurrency": 256, "timeout": 20, "sources": ["127.0.0.2", ...], "recover": false, "poll_us": 50}
//
// then one record per connection: the index of its source address (1 byte), the length of its HTTP upgrade
// request and the length of its set-up bytes (4 bytes each, big-endian), then the request and the set-up
// bytes themselves (for Centrifugo JSON the connect+subscribe frame, for NATS the CONNECT/SUB/PING frame, for
// Engine.IO the "40" frame; none for raw WebSocket servers).
//
// Commands arrive on standard input, one a line; each is answered by one JSON line on standard output:
//
//	(at start)  {"ready": N}
//	open        {"ok": N, "failed": N, "errors": [up to 5 distinct], "elapsed": seconds,
//	             "recovered": N, "recovered_publications": N}
//	close       {"closed": N, "lost": N}, then the program exits (it also closes everything and exits at
//	            the end of its input)
//
// With "recover" (Centrifugo JSON, whose set-up bytes then subscribe with recover, epoch and offset), the
// subscribe replies that say "recovered": true are counted, with the publications they carry.
//
// It runs on one thread (GOMAXPROCS=1, on the load generator's core) with non-blocking sockets and one epoll
// instance, "concurrency" set-ups in flight. Like the live receiver (bench/receiver/) it never sleeps in
// epoll_wait: when nothing is ready it sleeps poll_us by the clock and polls again. A client asleep in
// epoll_wait is woken by each write that reaches it, and on loopback that wake-up runs inside the server's
// write and is charged to the server (about a twentieth of its CPU per connection), while on a real network
// it is the client machine's cost. Polling adds at most poll_us to each step of a set-up.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// WebSocket opcodes (RFC 6455).
const (
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// IP_BIND_ADDRESS_NO_PORT (linux/in.h): bind picks the source port at connect time, so that one source
// address is not limited to the ephemeral range once per listening port.
const ipBindAddressNoPort = 24

const maxErrors = 5 // distinct error strings reported

const defaultPollUs = 50

// EPOLLET as the uint32 of EpollEvent.Events (syscall declares it as a negative int).
const epollET = 1 << 31

type header struct {
	Proto       string   `json:"proto"`
	Host        string   `json:"host"`
	Port        int      `json:"port"`
	Concurrency int      `json:"concurrency"`
	Timeout     float64  `json:"timeout"` // seconds for the whole set-up of one connection
	Sources     []string `json:"sources"`
	Recover     bool     `json:"recover"` // centrifugo: the subscribes recover; their replies are counted
	PollUs      int      `json:"poll_us"`
}

// spec is one connection to open.
type spec struct {
	source         int    // index into client.sources
	request, setup []byte // the upgrade request; the set-up bytes (a whole client frame, or nothing)
}

// Connection states.
const (
	connecting = iota // TCP connect in progress
	upgrading         // upgrade request sent, waiting for the 101
	settingUp         // the target's own set-up
	live              // set up: pings are answered until the connection is closed
)

type conn struct {
	fd       int
	sp       *spec
	state    int
	buf      []byte // bytes received; buf[pos:] is not consumed yet
	pos      int
	out      []byte // bytes the socket did not take yet
	deadline int64  // monotonic ns by which the set-up must be done
}

type client struct {
	header
	server   syscall.SockaddrInet4
	sources  []syscall.SockaddrInet4
	timeout  int64 // ns
	specs    []spec
	livePing []byte // a live connection answers a text/binary frame containing this (nil: none)...
	pong     []byte // ...with this client frame

	epfd     int
	conns    map[int]*conn // every open socket, by descriptor
	inflight map[*conn]struct{}
	rbuf     []byte

	next          int // the next spec to open
	opening       bool
	started       int64
	ok, failed    int64
	lost          int64 // connections the server closed after their set-up
	recovered     int64 // subscribe replies with "recovered": true
	recoveredPubs int64 // publications those replies carried
	errs          map[string]bool
}

func load(path string) (*client, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	nl := bytes.IndexByte(data, '\n')
	if nl < 0 {
		return nil, errors.New("no header line")
	}
	cl := &client{errs: map[string]bool{}, conns: map[int]*conn{}, inflight: map[*conn]struct{}{}}
	if err := json.Unmarshal(data[:nl], &cl.header); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	switch cl.Proto {
	case "centrifugo": // Centrifugo JSON: the server pings with an empty command, the client answers the same
		cl.livePing, cl.pong = []byte("{}"), clientFrame(opText, []byte("{}"))
	case "nats":
		cl.livePing, cl.pong = []byte("PING\r\n"), clientFrame(opBinary, []byte("PONG\r\n"))
	case "engineio": // the ping packet "2" (checked as the whole payload), answered with the pong packet "3"
		cl.pong = clientFrame(opText, []byte("3"))
	case "raw":
	default:
		return nil, fmt.Errorf("unknown protocol %q", cl.Proto)
	}
	if cl.PollUs <= 0 {
		cl.PollUs = defaultPollUs
	}
	server, err := ipv4(cl.Host)
	if err != nil {
		return nil, err
	}
	cl.server = syscall.SockaddrInet4{Port: cl.Port, Addr: server}
	cl.timeout = int64(cl.Timeout * 1e9)
	for _, src := range cl.Sources {
		addr, err := ipv4(src)
		if err != nil {
			return nil, err
		}
		cl.sources = append(cl.sources, syscall.SockaddrInet4{Addr: addr})
	}
	rest := data[nl+1:]
	for len(rest) > 0 {
		if len(rest) < 9 {
			return nil, errors.New("truncated record")
		}
		src := int(rest[0])
		nreq, nsetup := int(binary.BigEndian.Uint32(rest[1:5])), int(binary.BigEndian.Uint32(rest[5:9]))
		rest = rest[9:]
		if src >= len(cl.sources) || len(rest) < nreq+nsetup {
			return nil, fmt.Errorf("bad record %d", len(cl.specs))
		}
		cl.specs = append(cl.specs, spec{src, rest[:nreq:nreq], rest[nreq : nreq+nsetup : nreq+nsetup]})
		rest = rest[nreq+nsetup:]
	}
	return cl, nil
}

func ipv4(s string) ([4]byte, error) {
	ip := net.ParseIP(s).To4()
	if ip == nil {
		return [4]byte{}, fmt.Errorf("not an IPv4 address: %q", s)
	}
	return [4]byte(ip), nil
}

type openResult struct {
	OK                    int64    `json:"ok"`
	Failed                int64    `json:"failed"`
	Errors                []string `json:"errors"`
	Elapsed               float64  `json:"elapsed"`
	Recovered             int64    `json:"recovered"`
	RecoveredPublications int64    `json:"recovered_publications"`
}

// run polls the sockets and standard input until "close" or the end of the input.
func (cl *client) run(in *bufio.Reader, out *json.Encoder) error {
	var err error
	if cl.epfd, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	stdin := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: 0}
	if err := syscall.EpollCtl(cl.epfd, syscall.EPOLL_CTL_ADD, 0, &stdin); err != nil {
		return fmt.Errorf("epoll_ctl stdin: %w", err)
	}
	cl.rbuf = make([]byte, 64<<10)
	events := make([]syscall.EpollEvent, 1024)
	nap := syscall.NsecToTimespec(int64(cl.PollUs) * 1000)
	lastExpiry := int64(0)
	for {
		if cl.opening {
			cl.startMore()
		}
		n, err := syscall.EpollWait(cl.epfd, events, 0)
		if err != nil && err != syscall.EINTR {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		command := false
		for _, ev := range events[:max(n, 0)] {
			if ev.Fd == 0 {
				command = true
			} else if c := cl.conns[int(ev.Fd)]; c != nil {
				cl.handle(c, ev.Events)
			}
		}
		if cl.opening {
			if now := monotonicNs(); now-lastExpiry > 10_000_000 {
				lastExpiry = now
				cl.expire(now)
			}
			if cl.ok+cl.failed == int64(len(cl.specs)) {
				cl.opening = false
				out.Encode(cl.result())
			}
		}
		if command {
			if done := cl.command(in, out); done {
				return nil
			}
		}
		if n <= 0 {
			syscall.Nanosleep(&nap, nil)
		}
	}
}

// command handles the complete lines on standard input; true after "close" or at the end of the input.
func (cl *client) command(in *bufio.Reader, out *json.Encoder) bool {
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			cl.closeAll() // the coordinator is gone
			return true
		}
		switch cmd := strings.TrimSpace(line); cmd {
		case "open":
			if cl.opening || cl.next > 0 {
				out.Encode(map[string]string{"error": "already opened"})
				break
			}
			cl.opening, cl.started = true, monotonicNs()
			if len(cl.specs) == 0 {
				cl.opening = false
				out.Encode(cl.result())
			}
		case "close":
			closed := cl.closeAll()
			out.Encode(map[string]int64{"closed": int64(closed), "lost": cl.lost})
			return true
		default:
			out.Encode(map[string]string{"error": "unknown command " + strconv.Quote(cmd)})
		}
		if in.Buffered() == 0 {
			return false
		}
	}
}

func (cl *client) result() openResult {
	errs := make([]string, 0, len(cl.errs))
	for e := range cl.errs {
		errs = append(errs, e)
	}
	sort.Strings(errs)
	return openResult{
		cl.ok, cl.failed, errs[:min(len(errs), maxErrors)], float64(monotonicNs()-cl.started) / 1e9,
		cl.recovered, cl.recoveredPubs,
	}
}

// startMore starts connections until "concurrency" set-ups are in flight.
func (cl *client) startMore() {
	for len(cl.inflight) < max(cl.Concurrency, 1) && cl.next < len(cl.specs) {
		sp := &cl.specs[cl.next]
		cl.next++
		if err := cl.start(sp); err != nil {
			cl.failed++
			cl.noteError(err)
		}
	}
}

func (cl *client) start(sp *spec) error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	// The options the Python load generator sets. Closing sends a reset and leaves no TIME_WAIT behind: the
	// source ports stay reusable run after run.
	err = syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1})
	if err == nil {
		err = syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	}
	if err == nil {
		err = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	}
	if err == nil {
		src := cl.sources[sp.source]
		err = syscall.Bind(fd, &src)
	}
	if err == nil {
		if err = syscall.Connect(fd, &cl.server); err == syscall.EINPROGRESS {
			err = nil
		}
	}
	if err == nil {
		// Edge-triggered: each readiness is reported once, and handle reads until the socket is empty.
		ev := syscall.EpollEvent{
			Events: syscall.EPOLLIN | syscall.EPOLLOUT | syscall.EPOLLRDHUP | epollET,
			Fd:     int32(fd),
		}
		err = syscall.EpollCtl(cl.epfd, syscall.EPOLL_CTL_ADD, fd, &ev)
	}
	if err != nil {
		syscall.Close(fd)
		return fmt.Errorf("connect: %w", err)
	}
	c := &conn{fd: fd, sp: sp, state: connecting, deadline: monotonicNs() + cl.timeout}
	cl.conns[fd] = c
	cl.inflight[c] = struct{}{}
	return nil
}

// handle processes what epoll reported for one connection.
func (cl *client) handle(c *conn, events uint32) {
	if c.state == connecting {
		if events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return
		}
		if soerr, err := syscall.GetsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err != nil || soerr != 0 {
			if err == nil {
				err = syscall.Errno(soerr)
			}
			cl.failSetup(c, fmt.Errorf("connect: %w", err))
			return
		}
		c.state = upgrading
		if err := cl.send(c, c.sp.request); err != nil {
			cl.failSetup(c, err)
			return
		}
	} else if events&syscall.EPOLLOUT != 0 && len(c.out) > 0 {
		if err := cl.send(c, nil); err != nil {
			cl.gone(c, err)
			return
		}
	}
	if events&(syscall.EPOLLIN|syscall.EPOLLRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) == 0 {
		return
	}
	eof, err := cl.receive(c)
	if err == nil {
		err = cl.process(c)
	}
	if err == nil && eof {
		err = errors.New("closed by the server")
	}
	if err != nil {
		cl.gone(c, err)
	}
}

// receive reads everything the socket has; eof is true when the server closed it.
func (cl *client) receive(c *conn) (eof bool, err error) {
	for {
		n, err := syscall.Read(c.fd, cl.rbuf)
		if n > 0 {
			c.buf = append(c.buf, cl.rbuf[:n]...)
			if n == len(cl.rbuf) {
				continue
			}
			return false, nil
		}
		switch {
		case err == syscall.EAGAIN:
			return false, nil
		case err == syscall.EINTR:
			continue
		case err != nil:
			return true, err
		default:
			return true, nil
		}
	}
}

// send writes data after what the socket did not take yet (nil: only that).
func (cl *client) send(c *conn, data []byte) error {
	if len(c.out) > 0 {
		data = append(c.out, data...)
	}
	for len(data) > 0 {
		n, err := syscall.Write(c.fd, data)
		if err == syscall.EAGAIN {
			break
		}
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		data = data[n:]
	}
	c.out = append(c.out[:0], data...)
	return nil
}

// process consumes the complete messages received: the upgrade response, then frames.
func (cl *client) process(c *conn) error {
	if c.state == upgrading {
		end := bytes.Index(c.buf[c.pos:], []byte("\r\n\r\n"))
		if end < 0 {
			return nil
		}
		head := c.buf[c.pos : c.pos+end]
		status, _, _ := bytes.Cut(head, []byte("\r\n"))
		if !bytes.Contains(status, []byte(" 101 ")) && !bytes.HasSuffix(status, []byte(" 101")) {
			return fmt.Errorf("upgrade refused: %s", status)
		}
		c.pos += end + 4
		switch cl.Proto {
		case "raw": // live as soon as the upgrade succeeded
			cl.setUp(c)
		case "centrifugo": // connect + subscribe in one frame; the others wait for the server to speak first
			if err := cl.send(c, c.sp.setup); err != nil {
				return err
			}
			c.state = settingUp
		default:
			c.state = settingUp
		}
	}
	for c.state != upgrading {
		op, payload, ok := c.frame()
		if !ok {
			break
		}
		if err := cl.onFrame(c, op, payload); err != nil {
			return err
		}
	}
	if c.pos == len(c.buf) {
		c.buf, c.pos = c.buf[:0], 0
	}
	return nil
}

func (cl *client) onFrame(c *conn, op byte, payload []byte) error {
	switch op {
	case opPing:
		return cl.send(c, clientFrame(opPong, payload))
	case opClose:
		if c.state == live {
			return errors.New("closed by the server")
		}
		code, reason := 0, ""
		if len(payload) >= 2 {
			code, reason = int(binary.BigEndian.Uint16(payload)), string(payload[2:])
		}
		return fmt.Errorf("closed by the server during set-up: %d %s", code, reason)
	case opText, opBinary:
	default:
		return nil
	}
	if c.state == live {
		if (cl.livePing != nil && bytes.Contains(payload, cl.livePing)) ||
			(cl.Proto == "engineio" && string(payload) == "2") {
			return cl.send(c, cl.pong)
		}
		return nil
	}
	done, err := cl.setupFrame(c, payload)
	if err == nil && done {
		cl.setUp(c)
	}
	return err
}

// setUp marks a connection live.
func (cl *client) setUp(c *conn) {
	c.state = live
	delete(cl.inflight, c)
	cl.ok++
}

// setupFrame handles one text or binary frame received during the set-up: whether the connection is live now.
func (cl *client) setupFrame(c *conn, payload []byte) (bool, error) {
	switch cl.Proto {
	case "centrifugo": // replies, one JSON object a line; "{}" is a ping
		live := false
		for rest, more := payload, true; more; {
			var line []byte
			line, rest, more = bytes.Cut(rest, []byte("\n"))
			if string(line) == "{}" {
				if err := cl.send(c, cl.pong); err != nil {
					return false, err
				}
				continue
			}
			if len(line) == 0 || live {
				continue
			}
			var reply struct {
				ID        int             `json:"id"`
				Error     json.RawMessage `json:"error"`
				Subscribe *struct {
					Recovered    bool              `json:"recovered"`
					Publications []json.RawMessage `json:"publications"`
				} `json:"subscribe"`
			}
			if err := json.Unmarshal(line, &reply); err != nil {
				return false, fmt.Errorf("bad reply %.200q: %w", line, err)
			}
			if reply.Error != nil {
				return false, fmt.Errorf("command %d failed: %s", reply.ID, reply.Error)
			}
			live = reply.ID == 2 // the subscribe reply
			if live && cl.Recover && reply.Subscribe != nil && reply.Subscribe.Recovered {
				cl.recovered++
				cl.recoveredPubs += int64(len(reply.Subscribe.Publications))
			}
		}
		return live, nil
	case "engineio":
		switch {
		case bytes.HasPrefix(payload, []byte("40")): // connected to the default namespace
			return true, nil
		case bytes.HasPrefix(payload, []byte("44")):
			return false, fmt.Errorf("socket.io connect refused: %.200q", payload)
		case bytes.HasPrefix(payload, []byte("0{")): // the open packet: connect to the default namespace
			return false, cl.send(c, c.sp.setup)
		case string(payload) == "2":
			return false, cl.send(c, cl.pong)
		}
		return false, nil
	default: // nats
		if bytes.HasPrefix(payload, []byte("INFO")) { // CONNECT, SUB and a PING whose PONG confirms both
			return false, cl.send(c, c.sp.setup)
		}
		if bytes.Contains(payload, []byte("-ERR")) {
			return false, fmt.Errorf("NATS error: %.200q", payload)
		}
		if bytes.Contains(payload, []byte("PING\r\n")) {
			if err := cl.send(c, cl.pong); err != nil {
				return false, err
			}
		}
		return bytes.Contains(payload, []byte("PONG\r\n")), nil
	}
}

// gone ends a connection that failed or that the server closed: a failed set-up, or a lost connection.
func (cl *client) gone(c *conn, err error) {
	if c.state == live {
		cl.lost++
		cl.drop(c)
		return
	}
	cl.failSetup(c, err)
}

func (cl *client) failSetup(c *conn, err error) {
	cl.failed++
	cl.noteError(err)
	cl.drop(c)
}

func (cl *client) noteError(err error) {
	if len(cl.errs) < 100 {
		cl.errs[err.Error()] = true
	}
}

// drop closes a connection (a reset: SO_LINGER 0, like the Python load generator's abort).
func (cl *client) drop(c *conn) {
	syscall.Close(c.fd)
	delete(cl.conns, c.fd)
	delete(cl.inflight, c)
}

// expire fails the set-ups that passed their deadline.
func (cl *client) expire(now int64) {
	for c := range cl.inflight {
		if now > c.deadline {
			cl.failSetup(c, fmt.Errorf("set-up not finished within %gs", cl.Timeout))
		}
	}
}

// closeAll closes every open connection with a reset.
func (cl *client) closeAll() int {
	closed := 0
	for _, c := range cl.conns {
		if c.state == live {
			closed++
		}
		syscall.Close(c.fd)
	}
	cl.conns = map[int]*conn{}
	cl.inflight = map[*conn]struct{}{}
	return closed
}

// frame consumes the next complete frame in the buffer: its opcode and payload (unmasked in place, valid
// until the next read), or ok=false when the buffer does not hold a whole frame.
func (c *conn) frame() (op byte, payload []byte, ok bool) {
	b := c.buf[c.pos:]
	if len(b) < 2 {
		return 0, nil, false
	}
	n, hdr := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, nil, false
		}
		n, hdr = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, nil, false
		}
		n, hdr = binary.BigEndian.Uint64(b[2:]), 10
	}
	masked := b[1]&0x80 != 0
	if masked {
		hdr += 4
	}
	if len(b) < hdr || uint64(len(b)-hdr) < n {
		return 0, nil, false
	}
	payload = b[hdr : hdr+int(n)]
	if masked {
		key := b[hdr-4 : hdr]
		for k := range payload {
			payload[k] ^= key[k&3]
		}
	}
	c.pos += hdr + int(n)
	return b[0] & 0x0f, payload, true
}

// clientFrame is a final client frame masked with an all-zero key (valid, and the payload needs no XOR).
func clientFrame(op byte, data []byte) []byte {
	var head []byte
	switch n := len(data); {
	case n < 126:
		head = []byte{0x80 | op, 0x80 | byte(n)}
	case n < 65536:
		head = []byte{0x80 | op, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		head = binary.BigEndian.AppendUint64([]byte{0x80 | op, 0x80 | 127}, uint64(n))
	}
	return append(append(head, 0, 0, 0, 0), data...)
}

var clockStart = time.Now()

func monotonicNs() int64 {
	return int64(time.Since(clockStart))
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: stormgen FILE")
		os.Exit(2)
	}
	runtime.LockOSThread()
	cl, err := load(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "stormgen: %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	// No garbage collection: the process lives for one storm and holds what its connections need, so the
	// core goes to the connections (the limit is a safety net, far above what a storm of 10,000 uses).
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(2 << 30)
	out := json.NewEncoder(os.Stdout) // one write per line: os.Stdout is not buffered
	out.Encode(map[string]int{"ready": len(cl.specs)})
	if err := cl.run(bufio.NewReader(os.Stdin), out); err != nil {
		fmt.Fprintln(os.Stderr, "stormgen:", err)
		os.Exit(1)
	}
}
