// Command gofloor is the compiled floor server (see bench/floors/__init__.py): no protocol, one pre-encoded
// frame written to every subscriber of a channel, one write system call each, from one goroutine in the order
// the subscribers came. It runs with GOMAXPROCS=1, one core like the Python servers, and shows what a
// broadcast costs on this machine with next to nothing above the kernel.
//
// Usage: gofloor PORT
package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
)

const (
	guid    = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	maxHead = 8192
)

type hub struct {
	mu       sync.Mutex
	channels map[string][]*net.TCPConn // subscribers in the order they came; replaced, never changed in place
}

func (h *hub) add(channel string, c *net.TCPConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	subs := h.channels[channel]
	h.channels[channel] = append(subs[:len(subs):len(subs)], c)
}

func (h *hub) remove(channel string, c *net.TCPConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	subs := h.channels[channel]
	kept := make([]*net.TCPConn, 0, len(subs))
	for _, s := range subs {
		if s != c {
			kept = append(kept, s)
		}
	}
	h.channels[channel] = kept
}

// snapshot is the channel's subscribers, in order.
func (h *hub) snapshot(channel string) []*net.TCPConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.channels[channel]
}

// serverFrame is an unmasked text frame carrying payload.
func serverFrame(payload []byte) []byte {
	n := len(payload)
	var head []byte
	switch {
	case n < 126:
		head = []byte{0x81, byte(n)}
	case n < 65536:
		head = []byte{0x81, 126, byte(n >> 8), byte(n)}
	default:
		head = make([]byte, 10)
		head[0], head[1] = 0x81, 127
		binary.BigEndian.PutUint64(head[2:], uint64(n))
	}
	return append(head, payload...)
}

// upgrade reads the request head and answers 101; it returns the request path.
func upgrade(c *net.TCPConn, r *bufio.Reader) (string, error) {
	var key, target string
	total := 0
	for first := true; ; first = false {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		total += len(line)
		if total > maxHead {
			return "", errors.New("head too large")
		}
		line = strings.TrimRight(line, "\r\n")
		if first {
			parts := strings.Split(line, " ")
			if len(parts) != 3 || parts[0] != "GET" {
				return "", errors.New("not a GET request")
			}
			target = parts[1]
			continue
		}
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(name), "Sec-WebSocket-Key") {
			key = strings.TrimSpace(value)
		}
	}
	if key == "" {
		return "", errors.New("no Sec-WebSocket-Key")
	}
	sum := sha1.Sum([]byte(key + guid))
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n"
	if _, err := c.Write([]byte(resp)); err != nil {
		return "", err
	}
	return target, nil
}

// readFrame reads one client frame (masked) and returns its opcode and unmasked payload.
func readFrame(r *bufio.Reader) (byte, []byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(ext[:]))
	case 127:
		var ext [8]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(ext[:])
	}
	if n > 1<<24 {
		return 0, nil, errors.New("frame too large")
	}
	var mask [4]byte
	masked := hdr[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= mask[i&3]
		}
	}
	return hdr[0] & 0x0f, payload, nil
}

func serve(h *hub, c *net.TCPConn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 4096)
	target, err := upgrade(c, r)
	if err != nil {
		return
	}
	switch {
	case target == "/pub":
		for {
			op, payload, err := readFrame(r)
			if err != nil || !control(c, op, payload) {
				return
			}
			if op != 0x1 && op != 0x2 {
				continue
			}
			channel, data, ok := strings.Cut(string(payload), "\n")
			if !ok {
				continue
			}
			frame := serverFrame([]byte(data))
			for _, sub := range h.snapshot(channel) {
				sub.Write(frame) // a subscriber that is gone is dropped by its own reader
			}
		}
	case strings.HasPrefix(target, "/sub/"):
		channel, err := url.PathUnescape(target[len("/sub/"):])
		if err != nil {
			return
		}
		h.add(channel, c)
		defer h.remove(channel, c)
		for { // until the subscriber goes away
			op, payload, err := readFrame(r)
			if err != nil || !control(c, op, payload) {
				return
			}
		}
	}
}

// control answers a client's ping and close frames; false once the connection is closing.
func control(c *net.TCPConn, op byte, payload []byte) bool {
	if len(payload) > 125 { // longer is invalid in a control frame; the floor answers with the first 125 bytes
		payload = payload[:125]
	}
	switch op {
	case 0x8:
		c.Write(append([]byte{0x88, byte(len(payload))}, payload...)) // echo the close code
		return false
	case 0x9:
		c.Write(append([]byte{0x8A, byte(len(payload))}, payload...))
	}
	return true
}

func main() {
	runtime.GOMAXPROCS(1)
	if len(os.Args) != 2 {
		log.Fatal("usage: gofloor PORT")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	h := &hub{channels: map[string][]*net.TCPConn{}}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(h, c.(*net.TCPConn))
	}
}
