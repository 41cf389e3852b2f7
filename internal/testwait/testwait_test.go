package testwait

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestUntilReturnsOnceTheConditionHolds(t *testing.T) {
	calls := 0
	if err := Until(context.Background(), time.Minute, func() (bool, error) { calls++; return calls == 3, nil }); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Fatalf("polled %d times, want 3", calls)
	}
}

func TestUntilNamesTheLastReasonWhenItNeverHolds(t *testing.T) {
	err := Until(context.Background(), 3*Interval, func() (bool, error) { return false, errors.New("target down") })
	if err == nil || !strings.Contains(err.Error(), "target down") {
		t.Fatalf("Until() = %v, want the condition's last error", err)
	}
	if err := Until(context.Background(), 3*Interval, func() (bool, error) { return false, nil }); err == nil {
		t.Fatal("Until() = nil for a condition that never held")
	}
}

func TestAFinalErrorEndsTheWaitAtOnce(t *testing.T) {
	calls := 0
	exited := errors.New("promenroll exited")
	err := Until(context.Background(), time.Hour, func() (bool, error) { calls++; return false, Final(exited) })
	if !errors.Is(err, exited) || calls != 1 {
		t.Fatalf("Until() = %v after %d polls, want the final error after one", err, calls)
	}
}

func TestAConditionThatHoldsEndsTheWaitWhateverItsReason(t *testing.T) {
	if err := Until(context.Background(), time.Minute, func() (bool, error) { return true, errors.New("last output") }); err != nil {
		t.Fatalf("Until() = %v for a condition that held", err)
	}
}
