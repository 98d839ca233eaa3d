package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/elph-server/elph/platform/blob/blobtest"
	"github.com/elph-server/elph/platform/store/storetest"
)

// A production-shaped node: MariaDB for the database and an S3 server for
// files. It starts, reports both ready, and stops cleanly; when the S3
// server goes away, /readyz says so.
func TestServeOnMariaDBAndS3(t *testing.T) {
	s3 := blobtest.Start(t)
	n := newNodeEnv(t)
	env := n.env
	env["ELPH_DATABASE_DRIVER"] = "mysql"
	env["ELPH_DATABASE_DSN"] = storetest.MySQLDSN(t)
	env["ELPH_BLOB_KIND"] = "s3"
	env["ELPH_BLOB_S3_ENDPOINT"] = s3.Endpoint
	env["ELPH_BLOB_S3_USE_TLS"] = "false" // loopback
	env["ELPH_BLOB_S3_REGION"] = blobtest.Region
	env["ELPH_BLOB_S3_BUCKET"] = "elph-files"
	env["ELPH_BLOB_S3_ACCESS_KEY"] = blobtest.AccessKey
	env["ELPH_BLOB_S3_SECRET_KEY"] = blobtest.SecretKey
	env["ELPH_BLOB_S3_CREATE_BUCKET"] = "true"
	env["ELPH_SSO_INITIAL_ADMIN_PASSWORD"] = "admin-password-1"

	p := start(t, env, "serve", "--all")
	plain := &http.Client{Timeout: 5 * time.Second}
	waitFor(t, p, "ready", func() bool { code, _ := get(plain, "http://"+n.admin+"/readyz"); return code == 200 })
	_, body := get(plain, "http://"+n.admin+"/readyz")
	var ready struct{ Checks map[string]string }
	_ = json.Unmarshal([]byte(body), &ready)
	if ready.Checks["database"] != "ok" || ready.Checks["blob"] != "ok" {
		t.Errorf("readyz %s", body)
	}
	if strings.Contains(p.out.String(), blobtest.SecretKey) {
		t.Error("the S3 secret reached the log")
	}

	s3.Stop()
	waitFor(t, p, "blob unready", func() bool { code, _ := get(plain, "http://"+n.admin+"/readyz"); return code == 503 })
	if _, body := get(plain, "http://"+n.admin+"/readyz"); !strings.Contains(body, `"blob"`) || strings.Contains(body, `"blob":"ok"`) {
		t.Errorf("readyz after S3 stopped: %s", body)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
}
