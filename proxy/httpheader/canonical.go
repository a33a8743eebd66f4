package httpheader

import "net/http"

// CanonicalKey is net/http's canonical key for the header name (as
// http.CanonicalHeaderKey), without an allocation for the names HTTP/2 and
// gRPC requests and answers carry on every call. The HTTP/2 server, the
// HTTP/2 client and the sidecar's HTTP/2 stream share it.
func CanonicalKey(name string) string {
	if k := common(name); k != "" {
		return k
	}
	return http.CanonicalHeaderKey(name)
}

// CanonicalKeyBytes is CanonicalKey for a name held in bytes (fasthttp's
// header keys).
func CanonicalKeyBytes(name []byte) string {
	if k := common(string(name)); k != "" {
		return k
	}
	return http.CanonicalHeaderKey(string(name))
}

// common is the canonical key of a frequent name, lower case (HTTP/2) or
// already canonical (fasthttp); "" for any other.
func common(name string) string {
	switch name {
	case "content-type", "Content-Type":
		return "Content-Type"
	case "content-length", "Content-Length":
		return "Content-Length"
	case "grpc-status", "Grpc-Status":
		return "Grpc-Status"
	case "grpc-message", "Grpc-Message":
		return "Grpc-Message"
	case "grpc-timeout", "Grpc-Timeout":
		return "Grpc-Timeout"
	case "grpc-encoding", "Grpc-Encoding":
		return "Grpc-Encoding"
	case "grpc-accept-encoding", "Grpc-Accept-Encoding":
		return "Grpc-Accept-Encoding"
	case "te", "Te":
		return "Te"
	case "user-agent", "User-Agent":
		return "User-Agent"
	case "accept", "Accept":
		return "Accept"
	case "accept-encoding", "Accept-Encoding":
		return "Accept-Encoding"
	case "date", "Date":
		return "Date"
	case "server", "Server":
		return "Server"
	}
	return ""
}
