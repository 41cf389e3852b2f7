package webhook

import (
	"context"

	"github.com/go-logr/logr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

func loggerFrom(ctx context.Context) logr.Logger { return logf.FromContext(ctx) }
