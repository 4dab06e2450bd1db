package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	heraldv1 "github.com/heraldhq/herald/gen/herald/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// post sends body to method on the gateway's public listener over plain HTTP/1.1, as
// curl does, with the API key.
func (g *gateway) post(t *testing.T, method, contentType, key string, body []byte) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+g.conn.Target()+"/herald.v1."+method, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// envelope frames msg as the Connect streaming and gRPC-Web protocols do: a flags
// byte, a big-endian length, the message.
func envelope(flags byte, msg []byte) []byte {
	out := make([]byte, 5, 5+len(msg))
	out[0] = flags
	binary.BigEndian.PutUint32(out[1:], uint32(len(msg)))
	return append(out, msg...)
}

func readEnvelope(t *testing.T, r io.Reader) (byte, []byte) {
	t.Helper()
	var head [5]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, binary.BigEndian.Uint32(head[1:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		t.Fatal(err)
	}
	return head[0], msg
}

// TestHTTPJSONConnectAndGRPCWeb: on the same listener as gRPC, curl-style JSON reaches
// Send and LookupRecipient, StreamStatus streams over the Connect protocol, a gRPC-Web
// request is answered, and a call without a key is refused as it is over gRPC; gRPC
// keeps working beside them.
func TestHTTPJSONConnectAndGRPCWeb(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	_, key := g.newBusiness("Acme")
	phone := g.register(alice)

	// JSON, unary: Send.
	m := msg(alice, tx, rcpt, "json-1", "hello over JSON", phone)
	body, _ := protojson.Marshal(&heraldv1.SendRequest{Message: m})
	resp := g.post(t, "MessagingService/Send", "application/json", key, body)
	raw, _ := io.ReadAll(resp.Body)
	var sent heraldv1.SendResponse
	if resp.StatusCode != http.StatusOK || protojson.Unmarshal(raw, &sent) != nil ||
		sent.Result.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("JSON Send: %d %s", resp.StatusCode, raw)
	}

	// JSON, unary: LookupRecipient, and the same without a key.
	look := []byte(`{"recipient":"` + alice + `","category":"CATEGORY_TRANSACTIONAL"}`)
	resp = g.post(t, "MessagingService/LookupRecipient", "application/json", key, look)
	raw, _ = io.ReadAll(resp.Body)
	var lr heraldv1.LookupRecipientResponse
	if resp.StatusCode != http.StatusOK || protojson.Unmarshal(raw, &lr) != nil || len(lr.Devices) != 1 ||
		lr.Devices[0].DeviceId != phone.id {
		t.Fatalf("JSON LookupRecipient: %d %s", resp.StatusCode, raw)
	}
	resp = g.post(t, "MessagingService/LookupRecipient", "application/json", "", look)
	raw, _ = io.ReadAll(resp.Body)
	var connectErr struct{ Code string }
	if resp.StatusCode != http.StatusUnauthorized || json.Unmarshal(raw, &connectErr) != nil || connectErr.Code != "unauthenticated" {
		t.Fatalf("JSON call without a key: %d %s", resp.StatusCode, raw)
	}

	// Connect server streaming, JSON: StreamStatus from the start sends the ACCEPTED.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+g.conn.Target()+"/herald.v1.MessagingService/StreamStatus",
		bytes.NewReader(envelope(0, []byte(`{}`))))
	req.Header.Set("Content-Type", "application/connect+json")
	req.Header.Set("Authorization", "Bearer "+key)
	sresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	flags, ev := readEnvelope(t, bufio.NewReader(sresp.Body))
	var se heraldv1.StatusEvent
	if sresp.StatusCode != http.StatusOK || flags != 0 || protojson.Unmarshal(ev, &se) != nil ||
		se.Status != heraldv1.Status_STATUS_ACCEPTED || se.MessageId != sent.Result.MessageId {
		t.Fatalf("Connect StreamStatus: %d flags %d %s", sresp.StatusCode, flags, ev)
	}
	cancel()

	// gRPC-Web, binary: LookupRecipient.
	pb, _ := proto.Marshal(&heraldv1.LookupRecipientRequest{Recipient: alice, Category: tx})
	resp = g.post(t, "MessagingService/LookupRecipient", "application/grpc-web+proto", key, envelope(0, pb))
	r := bufio.NewReader(resp.Body)
	flags, data := readEnvelope(t, r)
	var wr heraldv1.LookupRecipientResponse
	if resp.StatusCode != http.StatusOK || flags != 0 || proto.Unmarshal(data, &wr) != nil || len(wr.Devices) != 1 {
		t.Fatalf("gRPC-Web LookupRecipient: %d flags %d", resp.StatusCode, flags)
	}
	flags, trailer := readEnvelope(t, r)
	if flags&0x80 == 0 || !strings.Contains(strings.ToLower(string(trailer)), "grpc-status: 0") {
		t.Fatalf("gRPC-Web trailers: flags %d %q", flags, trailer)
	}

	// gRPC, on the same listener.
	if res := g.send(key, msg(alice, tx, rcpt, "grpc-1", "hello over gRPC", phone)); res.Outcome != heraldv1.Outcome_OUTCOME_ACCEPTED {
		t.Fatalf("gRPC Send: %v", res)
	}
}

// TestHTTPRefusedBeforeTheBodyIsRead: an HTTP call without valid credentials is
// answered before any of its body is read: a request announcing 50 MB, of which only
// the headers are sent, gets its 401 at once.
func TestHTTPRefusedBeforeTheBodyIsRead(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	for _, key := range []string{"", "hk_unknownkey_" + strings.Repeat("a", 40)} {
		conn, err := net.Dial("tcp", g.conn.Target())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		head := "POST /herald.v1.MessagingService/SendBatch HTTP/1.1\r\nHost: herald\r\nContent-Type: application/json\r\n" +
			"Content-Length: 50000000\r\n"
		if key != "" {
			head += "Authorization: Bearer " + key + "\r\n"
		}
		if _, err := conn.Write([]byte(head + "\r\n{\"messages\":[")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("key %q: no answer before the body was sent: %v", key, err)
		}
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("key %q: %d, want 401", key, resp.StatusCode)
		}
	}
}

// TestHTTPHasNoAdminService: over HTTP the public listener answers the operator's
// service as absent whatever token comes with the call, right or wrong, so it is no
// way to guess the admin token.
func TestHTTPHasNoAdminService(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	for _, token := range []string{g.srv.cfg.AdminToken, "wrong-admin-token-0123456789"} {
		req, err := http.NewRequest(http.MethodPost, "http://"+g.conn.Target()+"/herald.v1.AdminService/CreateBusiness",
			strings.NewReader(`{"name":"Acme"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("an admin call with a %s token over the public HTTP listener: %d, want 404",
				map[bool]string{true: "right", false: "wrong"}[token == g.srv.cfg.AdminToken], resp.StatusCode)
		}
	}
}
