package linearizability

import (
	"math"
	"net/netip"
	"testing"

	"github.com/anishathalye/porcupine"
)

// The model rejects what it must: an address handed out while held, a
// retried join applied twice (answered 409 to a host outside the pool),
// and accepts a possibly-applied release either way.
func TestModelCatchesViolations(t *testing.T) {
	x := netip.MustParseAddr("10.0.0.2")
	op := func(client int, in linInput, out linOutput, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret}
	}
	m := linModel.ToModel()
	for _, c := range []struct {
		name string
		h    []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"twice", []porcupine.Operation{
			op(0, linInput{Kind: opRequest}, linOutput{Addr: x}, 0, 10),
			op(1, linInput{Kind: opRequest, Host: 1}, linOutput{Addr: x}, 20, 30),
		}, porcupine.Illegal},
		{"released between", []porcupine.Operation{
			op(0, linInput{Kind: opRequest}, linOutput{Addr: x}, 0, 10),
			op(0, linInput{Kind: opRelease, Addr: x}, linOutput{}, 11, 12),
			op(1, linInput{Kind: opRequest, Host: 1}, linOutput{Addr: x}, 20, 30),
		}, porcupine.Ok},
		{"release possibly applied", []porcupine.Operation{
			op(0, linInput{Kind: opRequest}, linOutput{Addr: x}, 0, 10),
			op(0, linInput{Kind: opRelease, Addr: x}, linOutput{Unknown: true}, 11, math.MaxInt64),
			op(1, linInput{Kind: opRequest, Host: 1}, linOutput{Addr: x}, 20, 30),
		}, porcupine.Ok},
		{"join applied twice", []porcupine.Operation{
			op(0, linInput{Kind: opJoin}, linOutput{Status: 409}, 0, 10),
		}, porcupine.Illegal},
		{"leave of a member answered 404", []porcupine.Operation{
			op(0, linInput{Kind: opJoin}, linOutput{}, 0, 10),
			op(0, linInput{Kind: opLeave}, linOutput{Status: 404}, 11, 20),
		}, porcupine.Illegal},
		{"join possibly applied", []porcupine.Operation{
			op(0, linInput{Kind: opJoin}, linOutput{Unknown: true}, 0, math.MaxInt64),
			op(0, linInput{Kind: opJoin}, linOutput{Status: 409}, 11, 20),
			op(0, linInput{Kind: opLeave}, linOutput{}, 21, 30),
			op(0, linInput{Kind: opLeave}, linOutput{Status: 404}, 31, 40),
		}, porcupine.Ok},
	} {
		if got := porcupine.CheckOperationsTimeout(m, c.h, 0); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}
