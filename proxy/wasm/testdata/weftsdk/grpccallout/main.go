// Command grpccallout is a test guest written with Weft's Go SDK that makes
// gRPC call-outs from a stream and answers with what came back:
//
//	/call    unary grpc.health.v1.Health/Check to cluster "grpc"
//	/stream  grpc.testing.TestService/FullDuplexCall: three requests, then
//	         the sending side closes; counts messages and metadata
//	/cancel  opens a stream, sends one request and cancels it
//	/nocluster  a unary call to a cluster that does not exist
package main

import (
	"strconv"
	"time"

	"github.com/weftmesh/weft/sdk"
)

func main() {}

func init() {
	sdk.Register(func([]byte) (sdk.Plugin, error) { return plugin{}, nil })
}

type plugin struct{}

func (plugin) NewHTTPFilter(*sdk.Stream) sdk.HTTPFilter { return &filter{} }

type filter struct{}

// A StreamingOutputCallRequest asking for one 10-byte response:
// response_parameters (field 2) = {size (field 1) = 10}.
var duplexRequest = []byte{0x12, 0x02, 0x08, 0x0a}

func (f *filter) OnRequestHeaders(s *sdk.Stream, _ bool) sdk.Action {
	path, _ := s.RequestHeaders().Get(":path")
	reply := func(body string) {
		_ = s.SendLocalResponse(200, []byte(body), nil)
	}
	switch path {
	case "/call", "/nocluster":
		cluster := "grpc"
		if path == "/nocluster" {
			cluster = "nosuchcluster"
		}
		md := [][2]string{{"x-callout", "weft"}}
		_, err := sdk.DispatchGRPCCall(cluster, "grpc.health.v1.Health", "Check", md, nil, 2*time.Second,
			func(msg []byte, st sdk.GRPCStatus) {
				// HealthCheckResponse: status (field 1) = SERVING (1).
				serving := len(msg) == 2 && msg[0] == 0x08 && msg[1] == 0x01
				reply("status=" + strconv.Itoa(int(st.Code)) + " serving=" + strconv.FormatBool(serving) + " message=" + st.Message)
			})
		if err != nil {
			reply("dispatch error: " + err.Error())
			return sdk.Continue
		}
		return sdk.Pause
	case "/stream":
		h := &duplex{reply: reply}
		st, err := sdk.OpenGRPCStream("grpc", "grpc.testing.TestService", "FullDuplexCall", nil, h)
		if err != nil {
			reply("open error: " + err.Error())
			return sdk.Continue
		}
		for i := 0; i < 3; i++ {
			if err := st.Send(duplexRequest, i == 2); err != nil {
				reply("send error: " + err.Error())
				return sdk.Continue
			}
		}
		return sdk.Pause
	case "/cancel":
		h := &duplex{reply: func(body string) { panic("a cancelled stream got a callback: " + body) }}
		st, err := sdk.OpenGRPCStream("grpc", "grpc.testing.TestService", "FullDuplexCall", nil, h)
		if err != nil {
			reply("open error: " + err.Error())
			return sdk.Continue
		}
		_ = st.Send(duplexRequest, false)
		if err := st.Cancel(); err != nil {
			reply("cancel error: " + err.Error())
			return sdk.Continue
		}
		reply("cancelled")
		return sdk.Continue
	}
	return sdk.Continue
}

// duplex counts what a stream sends back.
type duplex struct {
	reply             func(string)
	messages, bytes   int
	initial, trailing int
}

func (d *duplex) OnGRPCMetadata(md [][2]string, trailing bool) {
	if trailing {
		d.trailing = len(md)
	} else {
		d.initial = len(md)
	}
}

func (d *duplex) OnGRPCMessage(msg []byte) {
	d.messages++
	d.bytes += len(msg)
}

func (d *duplex) OnGRPCClose(st sdk.GRPCStatus) {
	d.reply("messages=" + strconv.Itoa(d.messages) + " bytes=" + strconv.Itoa(d.bytes) +
		" initial_md=" + strconv.FormatBool(d.initial > 0) + " trailing_md=" + strconv.FormatBool(d.trailing > 0) +
		" status=" + strconv.Itoa(int(st.Code)))
}
