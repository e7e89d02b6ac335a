// Command stormgen is the benchmark's connect-storm client. It opens many WebSocket connections as fast as it
// can, each set up with the target's own protocol exactly as the Python load generator does it
// (bench/loadgen.py, Subscriber), and holds them open, answering pings, until it is told to close them.
//
// Usage: stormgen FILE
//
// FILE (written by bench/stormgen.py) describes the connections: one JSON header line
//
//	{"proto": "centrifugo" | "nats" | "engineio" | "raw", "host": "127.0.0.1", "port": 8000,
//	 "concurrency": 256, "timeout": 20, "sources": ["127.0.0.2", ...], "recover": false}
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
// It is meant to run with GOMAXPROCS=1 on the load generator's core: a fixed set of runner goroutines open
// the connections one after another, and each open connection then has one goroutine, parked in the
// runtime's poller while nothing arrives.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// Linux: bind the source address now and leave the port to connect, which picks one per destination.
const ipBindAddressNoPort = 24

const maxErrors = 5 // distinct error strings reported

type header struct {
	Proto       string   `json:"proto"`
	Host        string   `json:"host"`
	Port        int      `json:"port"`
	Concurrency int      `json:"concurrency"`
	Timeout     float64  `json:"timeout"` // seconds for the whole set-up of one connection
	Sources     []string `json:"sources"`
	Recover     bool     `json:"recover"` // centrifugo: the subscribes recover; their replies are counted
}

// spec is one connection to open.
type spec struct {
	source         int    // index into client.dialers
	request, setup []byte // the upgrade request; the set-up bytes (a whole client frame, or nothing)
}

type client struct {
	header
	addr     string
	timeout  time.Duration
	dialers  []*net.Dialer // one per source address
	specs    []spec
	livePing []byte // a live connection answers a text/binary frame containing this (nil: none)...
	pong     []byte // ...with this client frame

	next    atomic.Int64 // the next connection to open
	ok      atomic.Int64
	failed  atomic.Int64
	lost    atomic.Int64 // connections the server closed after their set-up
	closing atomic.Bool

	recovered     atomic.Int64 // subscribe replies with "recovered": true
	recoveredPubs atomic.Int64 // publications those replies carried

	mu      sync.Mutex
	conns   []*net.TCPConn
	errs    map[string]bool
	keepers sync.WaitGroup
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
	cl := &client{errs: map[string]bool{}}
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
	cl.addr = net.JoinHostPort(cl.Host, strconv.Itoa(cl.Port))
	cl.timeout = time.Duration(cl.Timeout * float64(time.Second))
	for _, src := range cl.Sources {
		ip := net.ParseIP(src)
		if ip == nil {
			return nil, fmt.Errorf("bad source address %q", src)
		}
		// KeepAlive -1: no keep-alive probes, and no system calls to configure them.
		cl.dialers = append(cl.dialers, &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, KeepAlive: -1, Control: control})
	}
	rest := data[nl+1:]
	for len(rest) > 0 {
		if len(rest) < 9 {
			return nil, errors.New("truncated record")
		}
		src := int(rest[0])
		nreq, nsetup := int(binary.BigEndian.Uint32(rest[1:5])), int(binary.BigEndian.Uint32(rest[5:9]))
		rest = rest[9:]
		if src >= len(cl.dialers) || len(rest) < nreq+nsetup {
			return nil, fmt.Errorf("bad record %d", len(cl.specs))
		}
		cl.specs = append(cl.specs, spec{src, rest[:nreq:nreq], rest[nreq : nreq+nsetup : nreq+nsetup]})
		rest = rest[nreq+nsetup:]
	}
	return cl, nil
}

// control sets the socket options the Python load generator sets, before bind and connect (TCP_NODELAY is
// Go's default).
func control(_, _ string, rc syscall.RawConn) error {
	var err error
	cerr := rc.Control(func(fd uintptr) {
		// Closing sends a reset and leaves no TIME_WAIT behind: the source ports stay reusable run after run.
		err = syscall.SetsockoptLinger(int(fd), syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1})
		if err == nil {
			err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}

type openResult struct {
	OK                    int64    `json:"ok"`
	Failed                int64    `json:"failed"`
	Errors                []string `json:"errors"`
	Elapsed               float64  `json:"elapsed"`
	Recovered             int64    `json:"recovered"`
	RecoveredPublications int64    `json:"recovered_publications"`
}

// openAll opens every connection, at most Concurrency at a time, and returns once each is set up or failed.
func (cl *client) openAll() openResult {
	runners := min(max(cl.Concurrency, 1), len(cl.specs))
	var wg sync.WaitGroup
	started := time.Now()
	for range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(cl.next.Add(1) - 1)
				if i >= len(cl.specs) {
					return
				}
				cl.openOne(&cl.specs[i])
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(started).Seconds()
	cl.mu.Lock()
	errs := make([]string, 0, len(cl.errs))
	for e := range cl.errs {
		errs = append(errs, e)
	}
	cl.mu.Unlock()
	sort.Strings(errs)
	return openResult{
		cl.ok.Load(), cl.failed.Load(), errs[:min(len(errs), maxErrors)], elapsed,
		cl.recovered.Load(), cl.recoveredPubs.Load(),
	}
}

func (cl *client) openOne(sp *spec) {
	// One deadline for the whole set-up: connect, upgrade and the protocol's own exchange.
	deadline := time.Now().Add(cl.timeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	c, err := cl.dialers[sp.source].DialContext(ctx, "tcp", cl.addr)
	cancel()
	if err != nil {
		cl.fail(err)
		return
	}
	conn := c.(*net.TCPConn)
	r := &reader{conn: conn, buf: make([]byte, 0, 1024)}
	conn.SetDeadline(deadline)
	if err := cl.setup(r, sp); err != nil {
		conn.Close() // a reset (SO_LINGER 0), like the Python load generator's abort
		cl.fail(err)
		return
	}
	conn.SetDeadline(time.Time{})
	cl.ok.Add(1)
	cl.mu.Lock()
	cl.conns = append(cl.conns, conn)
	cl.mu.Unlock()
	cl.keepers.Add(1)
	go cl.keep(r)
}

func (cl *client) fail(err error) {
	cl.failed.Add(1)
	msg := err.Error()
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		msg = fmt.Sprintf("set-up not finished within %gs", cl.Timeout)
	case errors.Is(err, io.EOF):
		msg = "closed by the server during set-up"
	}
	cl.mu.Lock()
	if len(cl.errs) < 100 {
		cl.errs[msg] = true
	}
	cl.mu.Unlock()
}

// setup upgrades the connection and completes the protocol's set-up; the connection is live when it returns
// nil. Bytes read past the set-up stay in r for keep.
func (cl *client) setup(r *reader, sp *spec) error {
	conn := r.conn
	if _, err := conn.Write(sp.request); err != nil {
		return err
	}
	end := -1
	for end < 0 {
		if err := r.fill(); err != nil {
			return err
		}
		end = bytes.Index(r.buf, []byte("\r\n\r\n"))
	}
	status := r.buf[:bytes.Index(r.buf, []byte("\r\n"))]
	if !bytes.Contains(status, []byte(" 101 ")) && !bytes.HasSuffix(status, []byte(" 101")) {
		return fmt.Errorf("upgrade refused: %s", status)
	}
	r.pos = end + 4
	switch cl.Proto {
	case "raw": // live as soon as the upgrade succeeded
		return nil
	case "centrifugo": // connect + subscribe in one frame; the others wait for the server to speak first
		if _, err := conn.Write(sp.setup); err != nil {
			return err
		}
	}
	for {
		op, payload, ok := r.frame()
		if !ok {
			if err := r.fill(); err != nil {
				return fmt.Errorf("closed during set-up: %w", err)
			}
			continue
		}
		switch op {
		case opClose:
			code, reason := 0, ""
			if len(payload) >= 2 {
				code, reason = int(binary.BigEndian.Uint16(payload)), string(payload[2:])
			}
			return fmt.Errorf("closed by the server during set-up: %d %s", code, reason)
		case opPing:
			if _, err := conn.Write(clientFrame(opPong, payload)); err != nil {
				return err
			}
			continue
		case opText, opBinary:
		default:
			continue
		}
		live, err := cl.setupFrame(conn, sp, payload)
		if err != nil || live {
			return err
		}
	}
}

// setupFrame handles one text or binary frame received during the set-up: whether the connection is live now.
func (cl *client) setupFrame(conn *net.TCPConn, sp *spec, payload []byte) (bool, error) {
	var err error
	switch cl.Proto {
	case "centrifugo": // replies, one JSON object a line; "{}" is a ping
		live := false
		for rest, more := payload, true; more; {
			var line []byte
			line, rest, more = bytes.Cut(rest, []byte("\n"))
			if string(line) == "{}" {
				_, err = conn.Write(cl.pong)
				if err != nil {
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
				cl.recovered.Add(1)
				cl.recoveredPubs.Add(int64(len(reply.Subscribe.Publications)))
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
			_, err = conn.Write(sp.setup)
		case string(payload) == "2":
			_, err = conn.Write(cl.pong)
		}
		return false, err
	default: // nats
		if bytes.HasPrefix(payload, []byte("INFO")) { // CONNECT, SUB and a PING whose PONG confirms both
			_, err = conn.Write(sp.setup)
			return false, err
		}
		if bytes.Contains(payload, []byte("-ERR")) {
			return false, fmt.Errorf("NATS error: %.200q", payload)
		}
		if bytes.Contains(payload, []byte("PING\r\n")) {
			if _, err = conn.Write(cl.pong); err != nil {
				return false, err
			}
		}
		return bytes.Contains(payload, []byte("PONG\r\n")), nil
	}
}

// keep holds a live connection: it answers pings until the connection is closed.
func (cl *client) keep(r *reader) {
	defer cl.keepers.Done()
	for {
		for {
			op, payload, ok := r.frame()
			if !ok {
				break
			}
			var err error
			switch {
			case op == opPing:
				_, err = r.conn.Write(clientFrame(opPong, payload))
			case op != opText && op != opBinary:
			case cl.livePing != nil && bytes.Contains(payload, cl.livePing),
				cl.Proto == "engineio" && string(payload) == "2":
				_, err = r.conn.Write(cl.pong)
			}
			if err != nil {
				break
			}
		}
		if err := r.fill(); err != nil {
			if !cl.closing.Load() {
				cl.lost.Add(1)
				r.conn.Close()
			}
			return
		}
	}
}

// closeAll closes every open connection with a reset and waits for their goroutines to end.
func (cl *client) closeAll() int {
	cl.closing.Store(true)
	cl.mu.Lock()
	conns := cl.conns
	cl.conns = nil
	cl.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	cl.keepers.Wait()
	return len(conns)
}

// reader buffers what a connection received; buf[pos:] is not consumed yet.
type reader struct {
	conn *net.TCPConn
	buf  []byte
	pos  int
}

// fill reads once more from the connection, after the bytes not consumed yet.
func (r *reader) fill() error {
	if r.pos > 0 {
		n := copy(r.buf, r.buf[r.pos:])
		r.buf, r.pos = r.buf[:n], 0
	}
	if len(r.buf) == cap(r.buf) {
		r.buf = append(r.buf, make([]byte, cap(r.buf))...)[:len(r.buf)]
	}
	n, err := r.conn.Read(r.buf[len(r.buf):cap(r.buf)])
	r.buf = r.buf[:len(r.buf)+n]
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// frame consumes the next complete frame in the buffer: its opcode and payload (unmasked in place, valid
// until the next fill), or ok=false when the buffer does not hold a whole frame.
func (r *reader) frame() (op byte, payload []byte, ok bool) {
	b := r.buf[r.pos:]
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
	r.pos += hdr + int(n)
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

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: stormgen FILE")
		os.Exit(2)
	}
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
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch cmd := strings.TrimSpace(in.Text()); cmd {
		case "open":
			out.Encode(cl.openAll())
		case "close":
			closed := cl.closeAll()
			out.Encode(map[string]int64{"closed": int64(closed), "lost": cl.lost.Load()})
			return
		default:
			out.Encode(map[string]string{"error": "unknown command " + strconv.Quote(cmd)})
		}
	}
	cl.closeAll() // end of input: the coordinator is gone
}
