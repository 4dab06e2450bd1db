package relay

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// TestHoldCutClose: a held relay passes requests and loses their answers; Cut breaks
// the connection and lets the next through; Close refuses new ones.
func TestHoldCutClose(t *testing.T) {
	t.Parallel()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { echo.Close() })
	got := make(chan string, 10) // what the target received
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s := bufio.NewScanner(c)
				for s.Scan() {
					got <- s.Text()
					c.Write([]byte(s.Text() + "\n"))
				}
			}()
		}
	}()
	r := Start(t, echo.Addr().String())
	dial := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", r.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(5 * time.Second))
		return c, bufio.NewReader(c)
	}
	c, rd := dial()
	c.Write([]byte("one\n"))
	if l, err := rd.ReadString('\n'); err != nil || l != "one\n" {
		t.Fatalf("through the relay: %q, %v", l, err)
	}
	<-got

	r.Hold()
	c.Write([]byte("two\n"))
	if s := <-got; s != "two" {
		t.Fatalf("the target received %q while held, want two", s)
	}
	r.Cut()
	if l, err := rd.ReadString('\n'); err == nil {
		t.Fatalf("the held answer came back: %q", l)
	}

	c, rd = dial()
	c.Write([]byte("three\n"))
	if l, err := rd.ReadString('\n'); err != nil || l != "three\n" {
		t.Fatalf("after Cut: %q, %v", l, err)
	}
	<-got

	r.Close()
	if c, err := net.Dial("tcp", r.Addr); err == nil {
		c.Close()
		t.Fatal("dialed a closed relay")
	}
}
