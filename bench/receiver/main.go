// Command receiver is the benchmark's live receiver. A load-generator worker (bench/loadgen.py) sets its
// connections up — upgrade, then the target's protocol — and hands the connected sockets to this program,
// which from then on reads them, counts deliveries, samples latencies and answers pings, for a fraction of
// the worker's cost per delivery: the Python workers spent about 9 µs of their core on each delivery, as
// much as the servers they measure, so at 10,000 subscribers they bounded the latency they reported.
//
// Usage: receiver COUNTERS SLOT
//
// The sockets are inherited as open file descriptors. COUNTERS is a file of 8-byte little-endian slots
// shared with the coordinator; this program keeps the number of deliveries it counted in slot SLOT, so the
// coordinator reads the running total without asking.
//
// Standard input: first one JSON line
//
//	{"fds": [7, 8, ...], "sample": [0, 25, ...], "ping": "7b7d", "pong": "81807b7d", "poll_us": 500}
//
// — the sockets, the positions in "fds" of the sockets whose embedded timestamps are sampled, the byte
// pattern of a server ping in the live stream and the whole client frame that answers it (hex), and the
// poll interval. Then commands, one a line, each answered by one JSON line on standard output:
//
//	(at start)  {"ready": N}
//	record 1    {} — start sampling latencies (dropping earlier samples); "record 0" stops
//	collect     {"delivered": N, "lost": N, "alive": N, "samples": K, "arrival_samples": A}, followed by K
//	            little-endian int64 latencies in nanoseconds, then A more
//	close       {"closed": N, "delivered": N, "lost": N}, then the program exits
//
// Deliveries are counted as the Python workers count them: occurrences of the payload marker "ts": in the
// raw stream, a marker cut by a read boundary included. A socket the server closes counts as lost.
//
// Reading: one thread (GOMAXPROCS=1, on the load generator's core) and one epoll instance for all sockets.
// With poll_us > 0 it never sleeps in epoll_wait: when nothing is ready it sleeps poll_us by the clock and
// polls again. A receiver asleep in epoll_wait is woken by each write that reaches it, and on loopback
// that wake-up runs in the writer's system call, so it would be charged to the server; on a real network
// it is the receiving machine's cost. Polling adds at most poll_us to each measured latency, alike for
// every target.
//
// Two latencies are sampled per delivery: until this program read it, and until it reached the socket (the
// kernel's receive timestamp, SO_TIMESTAMPNS, of the read that returned it). They differ by how long the
// delivery waited for this program; while its core is saturated that wait is the load generator's, not the
// server's. A read that returns several deliveries carries one timestamp, of the last segment it read.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"unsafe"
)

var mark = []byte(`"ts":`)

const maxSamples = 2_000_000

type header struct {
	Fds    []int  `json:"fds"`
	Sample []int  `json:"sample"`
	Ping   string `json:"ping"`
	Pong   string `json:"pong"`
	PollUs int    `json:"poll_us"`
}

type conn struct {
	fd     int
	sample bool
	open   bool
	carry  []byte // the last bytes read, for a marker or ping cut by the read boundary
}

type receiver struct {
	conns     []conn
	ping      []byte
	pong      []byte
	epfd      int
	counter   *uint64
	delivered uint64
	lost      int
	alive     int
	recording bool
	latencies []int64 // when the receiver read each sampled delivery, from its embedded send time
	arrivals  []int64 // when it reached the socket (the kernel's receive timestamp), from the same send time
	buf       []byte
	oob       []byte // control messages of a sampled read (its receive timestamp)
	scratch   []byte // for joint
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "receiver:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 3 {
		return fmt.Errorf("usage: receiver COUNTERS SLOT")
	}
	runtime.LockOSThread()
	slot, err := strconv.Atoi(os.Args[2])
	if err != nil || slot < 0 {
		return fmt.Errorf("bad slot %q", os.Args[2])
	}
	counter, err := mapCounter(os.Args[1], slot)
	if err != nil {
		return err
	}
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	line, err := in.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading the header: %w", err)
	}
	var h header
	if err := json.Unmarshal(line, &h); err != nil {
		return fmt.Errorf("bad header: %w", err)
	}
	r := &receiver{
		counter: counter, buf: make([]byte, 256<<10), oob: make([]byte, syscall.CmsgSpace(16)),
		scratch: make([]byte, 0, 64),
	}
	if r.ping, err = hex.DecodeString(h.Ping); err != nil {
		return fmt.Errorf("bad ping: %w", err)
	}
	if r.pong, err = hex.DecodeString(h.Pong); err != nil {
		return fmt.Errorf("bad pong: %w", err)
	}
	if r.epfd, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	sampled := make(map[int]bool, len(h.Sample))
	for _, k := range h.Sample {
		sampled[k] = true
	}
	r.conns = make([]conn, len(h.Fds))
	for k, fd := range h.Fds {
		r.conns[k] = conn{fd: fd, sample: sampled[k], open: true}
		if sampled[k] {
			if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
				return fmt.Errorf("SO_TIMESTAMPNS on fd %d: %w", fd, err)
			}
		}
		if err := syscall.SetNonblock(fd, true); err != nil {
			return fmt.Errorf("fd %d: %w", fd, err)
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(k)}
		if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return fmt.Errorf("epoll_ctl fd %d: %w", fd, err)
		}
	}
	r.alive = len(r.conns)
	// Standard input is polled with the sockets: its index is one past the last connection.
	stdinEv := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(len(r.conns))}
	if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, 0, &stdinEv); err != nil {
		return fmt.Errorf("epoll_ctl stdin: %w", err)
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	reply(out, map[string]any{"ready": len(r.conns)})
	return r.loop(in, out, h.PollUs)
}

// mapCounter maps the SLOT-th 8-byte slot of the counters file.
func mapCounter(path string, slot int) (*uint64, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	size := (slot + 1) * 8
	mem, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return (*uint64)(unsafe.Pointer(&mem[slot*8])), nil
}

func reply(out *bufio.Writer, v any) {
	data, _ := json.Marshal(v)
	out.Write(data)
	out.WriteByte('\n')
	out.Flush()
}

func (r *receiver) loop(in *bufio.Reader, out *bufio.Writer, pollUs int) error {
	events := make([]syscall.EpollEvent, 1024)
	timeout := -1
	if pollUs > 0 {
		timeout = 0
	}
	nap := syscall.NsecToTimespec(int64(pollUs) * 1000)
	stdin := int32(len(r.conns))
	for {
		n, err := syscall.EpollWait(r.epfd, events, timeout)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return fmt.Errorf("epoll_wait: %w", err)
		}
		if n == 0 {
			if timeout == 0 {
				syscall.Nanosleep(&nap, nil)
			}
			continue
		}
		command := false
		for _, ev := range events[:n] {
			if ev.Fd == stdin {
				command = true
				continue
			}
			r.read(int(ev.Fd))
		}
		atomic.StoreUint64(r.counter, r.delivered)
		if command {
			done, err := r.command(in, out)
			if err != nil || done {
				return err
			}
		}
	}
}

// read takes what one socket has (one read: a socket with more left is reported again by the next poll).
func (r *receiver) read(k int) {
	c := &r.conns[k]
	if !c.open {
		return
	}
	var n int
	var err error
	var arrived int64
	if c.sample {
		n, arrived, err = r.recv(c.fd)
	} else {
		n, err = syscall.Read(c.fd, r.buf)
	}
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if n <= 0 {
		r.drop(c)
		return
	}
	data := r.buf[:n]
	count := bytes.Count(data, mark)
	if len(c.carry) > 0 {
		count += bytes.Count(r.joint(c.carry, data, len(mark)-1), mark)
	}
	if len(r.ping) > 0 && r.hasPing(c, data) {
		syscall.Write(c.fd, r.pong)
	}
	keep := 8
	if n >= keep {
		c.carry = append(c.carry[:0], data[n-keep:]...)
	} else {
		c.carry = append(c.carry, data...)
		if len(c.carry) > keep {
			c.carry = c.carry[len(c.carry)-keep:]
		}
	}
	if count == 0 {
		return
	}
	r.delivered += uint64(count)
	if c.sample && r.recording && len(r.latencies) < maxSamples {
		r.sample(data, arrived)
	}
}

// recv reads a sampled socket with its receive timestamp (CLOCK_MONOTONIC ns; 0 when the kernel gave none).
func (r *receiver) recv(fd int) (n int, arrived int64, err error) {
	n, oobn, _, _, err := syscall.Recvmsg(fd, r.buf, r.oob, 0)
	if err != nil || oobn == 0 {
		return n, 0, err
	}
	msgs, perr := syscall.ParseSocketControlMessage(r.oob[:oobn])
	if perr != nil {
		return n, 0, nil
	}
	for _, m := range msgs {
		if m.Header.Level == syscall.SOL_SOCKET && m.Header.Type == syscall.SO_TIMESTAMPNS && len(m.Data) >= 16 {
			sec := int64(binary.LittleEndian.Uint64(m.Data[0:8]))
			nsec := int64(binary.LittleEndian.Uint64(m.Data[8:16]))
			// The timestamp is CLOCK_REALTIME; the send times are CLOCK_MONOTONIC.
			arrived = sec*1_000_000_000 + nsec - realtimeNs() + monotonicNs()
		}
	}
	return n, arrived, nil
}

// joint is the last k bytes of carry followed by the first k of data (in a reused buffer): a pattern of up to
// k+1 bytes cut by the read boundary lies whole inside it.
func (r *receiver) joint(carry, data []byte, k int) []byte {
	out := append(r.scratch[:0], carry[len(carry)-min(len(carry), k):]...)
	return append(out, data[:min(len(data), k)]...)
}

func (r *receiver) hasPing(c *conn, data []byte) bool {
	if bytes.Contains(data, r.ping) {
		return true
	}
	if len(c.carry) == 0 || len(r.ping) < 2 {
		return false
	}
	return bytes.Contains(r.joint(c.carry, data, len(r.ping)-1), r.ping)
}

// sample records now - ts (and arrived - ts when arrived is known) for every whole "ts":<digits>, in data
// (one cut by the read boundary is skipped).
func (r *receiver) sample(data []byte, arrived int64) {
	now := monotonicNs()
	for {
		i := bytes.Index(data, mark)
		if i < 0 {
			return
		}
		data = data[i+len(mark):]
		var ts int64
		j := 0
		for j < len(data) && data[j] >= '0' && data[j] <= '9' {
			ts = ts*10 + int64(data[j]-'0')
			j++
		}
		if j == 0 || j == len(data) || data[j] != ',' {
			continue
		}
		if len(r.latencies) < maxSamples {
			r.latencies = append(r.latencies, now-ts)
			if arrived > 0 {
				r.arrivals = append(r.arrivals, arrived-ts)
			}
		}
		data = data[j:]
	}
}

func (r *receiver) drop(c *conn) {
	syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	syscall.Close(c.fd)
	c.open = false
	r.alive--
	r.lost++
}

// command handles the complete lines on standard input; done is true after "close".
func (r *receiver) command(in *bufio.Reader, out *bufio.Writer) (done bool, err error) {
	for {
		line, err := in.ReadString('\n')
		if err != nil {
			r.closeAll()
			return true, nil // the worker is gone: close everything and end
		}
		switch strings.TrimSpace(line) {
		case "record 1":
			r.recording = true
			r.latencies = r.latencies[:0]
			r.arrivals = r.arrivals[:0]
			reply(out, struct{}{})
		case "record 0":
			r.recording = false
			reply(out, struct{}{})
		case "collect":
			reply(out, map[string]any{
				"delivered": r.delivered, "lost": r.lost, "alive": r.alive, "samples": len(r.latencies),
				"arrival_samples": len(r.arrivals),
			})
			for _, samples := range [][]int64{r.latencies, r.arrivals} {
				raw := make([]byte, 8*len(samples))
				for k, v := range samples {
					binary.LittleEndian.PutUint64(raw[8*k:], uint64(v))
				}
				out.Write(raw)
			}
			out.Flush()
		case "close":
			closed := r.closeAll()
			reply(out, map[string]any{"closed": closed, "delivered": r.delivered, "lost": r.lost})
			return true, nil
		default:
			reply(out, map[string]any{"error": fmt.Sprintf("unknown command %q", strings.TrimSpace(line))})
		}
		if in.Buffered() == 0 {
			return false, nil
		}
	}
}

func (r *receiver) closeAll() int {
	closed := 0
	for k := range r.conns {
		c := &r.conns[k]
		if c.open {
			syscall.Close(c.fd)
			c.open = false
			closed++
		}
	}
	r.alive = 0
	return closed
}

func realtimeNs() int64 {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 0 /* CLOCK_REALTIME */, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}

func monotonicNs() int64 {
	var ts syscall.Timespec
	syscall.Syscall(syscall.SYS_CLOCK_GETTIME, 1 /* CLOCK_MONOTONIC */, uintptr(unsafe.Pointer(&ts)), 0)
	return ts.Nano()
}
