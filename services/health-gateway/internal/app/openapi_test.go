package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/mcloudtt/mcloudtt/pkg/devices"
	"github.com/mcloudtt/mcloudtt/services/health-gateway/internal/api"
)

// apiCase is one request of the conformance test: operation op of the document, sent to path.
type apiCase struct {
	op, method, path, token string
	body                    any
	params                  map[string]string // the path parameters, as the document names them
	bad                     bool              // the request breaks the document on purpose (a 400 case)
}

// The OpenAPI document is valid (kin-openapi), names every route the gateway serves, and the
// gateway answers every documented operation, on three real replicas, with a status the
// document lists for it and a body its schema accepts (every field documented, the required
// ones present: the schemas forbid additional properties). Every operation is exercised.
func TestOpenAPIConformance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	doc, err := openapi3.NewLoader().LoadFromData(api.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("the OpenAPI document is invalid: %v", err)
	}
	ops := map[string]*routers.Route{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops[op.OperationID] = &routers.Route{Spec: doc, Path: path, PathItem: item, Method: method, Operation: op}
		}
	}
	for _, p := range api.New(api.Options{}).Patterns() {
		method, path, _ := strings.Cut(p, " ")
		path = strings.ReplaceAll(path, "...}", "}")
		item := doc.Paths.Value(path)
		if item == nil || item.GetOperation(method) == nil {
			t.Errorf("route %s is not in the OpenAPI document", p)
		}
	}

	c, addrs := startAPICluster(t)
	connectV5(t, addrs["broker-c"], "dev-c")
	connectV5(t, addrs["broker-a"], "dev-a")
	c.callJSON("POST", "/api/v1/publish", adminToken, map[string]any{"topic": "r/1", "payload": "x", "retain": true}, 200, nil)
	id := map[string]string{"id": "dev-c"}
	cases := append([]apiCase{
		{op: "getOpenAPI", method: "GET", path: "/api/v1/openapi.json", token: readToken},
		{op: "whoAmI", method: "GET", path: "/api/v1/whoami", token: readToken},
		{op: "listClients", method: "GET", path: "/api/v1/clients?limit=1", token: readToken},
		{op: "listClients", method: "GET", path: "/api/v1/clients?limit=0", token: readToken, bad: true},
		{op: "listClients", method: "GET", path: "/api/v1/clients", token: ""},
		{op: "getSession", method: "GET", path: "/api/v1/clients/dev-c", token: readToken, params: id},
		{op: "getSession", method: "GET", path: "/api/v1/clients/nobody", token: readToken, params: map[string]string{"id": "nobody"}},
		{op: "kickClient", method: "POST", path: "/api/v1/clients/dev-c/kick", token: readToken, params: id},
		{op: "kickClient", method: "POST", path: "/api/v1/clients/dev-c/kick", token: adminToken, params: id},
		{op: "kickClient", method: "POST", path: "/api/v1/clients/dev-c/kick", token: adminToken, params: id},
		{op: "addBan", method: "POST", path: "/api/v1/bans", token: adminToken,
			body: api.BanRequest{Kind: "client_id", Value: "dev-a", DurationSeconds: 60, Reason: "conformance"}},
		{op: "addBan", method: "POST", path: "/api/v1/bans", token: adminToken, body: map[string]any{"kind": "ip", "value": "x", "duration_seconds": 1}, bad: true},
		{op: "listBans", method: "GET", path: "/api/v1/bans", token: readToken},
		{op: "removeBan", method: "DELETE", path: "/api/v1/bans/client_id/dev-a", token: adminToken,
			params: map[string]string{"kind": "client_id", "value": "dev-a"}},
		{op: "removeBan", method: "DELETE", path: "/api/v1/bans/client_id/dev-a", token: adminToken,
			params: map[string]string{"kind": "client_id", "value": "dev-a"}},
		{op: "listRetained", method: "GET", path: "/api/v1/retained?filter=" + url.QueryEscape("r/#"), token: readToken},
		{op: "listRetained", method: "GET", path: "/api/v1/retained?filter=" + url.QueryEscape("a/#/b"), token: readToken},
		{op: "getRetained", method: "GET", path: "/api/v1/retained/r/1", token: readToken, params: map[string]string{"topic": "r/1"}},
		{op: "deleteRetained", method: "DELETE", path: "/api/v1/retained/r/1", token: adminToken, params: map[string]string{"topic": "r/1"}},
		{op: "getRetained", method: "GET", path: "/api/v1/retained/r/1", token: readToken, params: map[string]string{"topic": "r/1"}},
		{op: "deleteRetained", method: "DELETE", path: "/api/v1/retained/r/1", token: adminToken, params: map[string]string{"topic": "r/1"}},
		{op: "publish", method: "POST", path: "/api/v1/publish", token: adminToken,
			body: map[string]any{"topic": "t/1", "payload": "hi", "qos": 1, "user_properties": map[string]string{"k": "v"}}},
		{op: "publish", method: "POST", path: "/api/v1/publish", token: adminToken, body: map[string]any{"topic": "t/#"}},
		{op: "publish", method: "POST", path: "/api/v1/publish", token: adminToken, body: map[string]any{"topic": "t", "replica": "broker-z"}},
	}, deviceKeyCases(t)...)
	seen := map[string]map[int]bool{}
	for _, tc := range cases {
		route := ops[tc.op]
		if route == nil {
			t.Fatalf("operation %s is not in the document", tc.op)
		}
		code := checkOperation(t, c, route, tc)
		if seen[tc.op] == nil {
			seen[tc.op] = map[int]bool{}
		}
		seen[tc.op][code] = true
	}
	for opID := range ops {
		if len(seen[opID]) == 0 {
			t.Errorf("operation %s is not exercised by the conformance test", opID)
		}
	}
	t.Logf("statuses seen per operation: %v", seen)
}

// checkOperation sends tc and validates the answer against the operation; it returns the status.
func checkOperation(t *testing.T, c *testCluster, route *routers.Route, tc apiCase) int {
	t.Helper()
	var raw []byte
	if tc.body != nil {
		raw, _ = json.Marshal(tc.body)
	}
	req, err := http.NewRequest(tc.method, c.base+tc.path, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if tc.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tc.token != "" {
		req.Header.Set("Authorization", "Bearer "+tc.token)
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: tc.params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if !tc.bad {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			t.Fatalf("%s %s: the test's request breaks the document: %v", tc.method, tc.path, err)
		}
		req.Body = io.NopCloser(bytes.NewReader(raw))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
		Header: resp.Header, Options: &openapi3filter.Options{IncludeResponseStatus: true}}
	out.SetBodyBytes(body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Fatalf("%s %s (%s): the answer breaks the document: %v\n%s", tc.method, tc.path, tc.op, err, body)
	}
	return resp.StatusCode
}

// deviceKeyCases exercise the device key operations: list (empty, then one key), add (read-only
// 403, new 201, again 200, a private key 400, an expiry in the past 400, over the maximum 409),
// remove (200, then 404).
func deviceKeyCases(t *testing.T) []apiCase {
	_, pub, priv := newDeviceKey(t)
	k, err := devices.ParseKey([]byte(pub))
	if err != nil {
		t.Fatal(err)
	}
	const keys = "/api/v1/devices/dev-k/keys"
	dev := map[string]string{"id": "dev-k"}
	one := map[string]string{"id": "dev-k", "keyid": k.ID}
	expires := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	cases := []apiCase{
		{op: "listDeviceKeys", method: "GET", path: keys, token: readToken, params: dev},
		{op: "addDeviceKey", method: "POST", path: keys, token: readToken, params: dev, body: map[string]any{"pem": pub}},
		{op: "addDeviceKey", method: "POST", path: keys, token: adminToken, params: dev, body: map[string]any{"pem": pub}},
		{op: "addDeviceKey", method: "POST", path: keys, token: adminToken, params: dev, body: map[string]any{"pem": pub, "expires": expires}},
		{op: "addDeviceKey", method: "POST", path: keys, token: adminToken, params: dev, body: map[string]any{"pem": priv}},
		{op: "addDeviceKey", method: "POST", path: keys, token: adminToken, params: dev,
			body: map[string]any{"pem": pub, "expires": "2001-01-01T00:00:00Z"}},
		{op: "listDeviceKeys", method: "GET", path: keys, token: readToken, params: dev},
		{op: "removeDeviceKey", method: "DELETE", path: keys + "/" + k.ID, token: adminToken, params: one},
		{op: "removeDeviceKey", method: "DELETE", path: keys + "/" + k.ID, token: adminToken, params: one},
	}
	for range 4 { // the fourth is over the maximum of three: 409
		_, pub, _ := newDeviceKey(t)
		cases = append(cases, apiCase{op: "addDeviceKey", method: "POST", path: keys, token: adminToken, params: dev,
			body: map[string]any{"pem": pub}})
	}
	return cases
}
