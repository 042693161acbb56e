# govmigrate — the two commands a newcomer needs are `make demo` and `make test`.
# Both do all set-up first: Debian packages (apt-get), a virtual environment, Python packages.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Servers the test lab starts on 127.0.0.1: Dovecot (IMAP), BIND9 (DNS), Kamailio (SIP; its tls module is a
# package of its own), and sipsak, the independent SIP client the tests register with. iproute2: the DNS
# lab gives each named its own loopback address (ip addr add ... dev lo). chromium and chromium-driver: the HTML
# report is opened in a real headless browser by the tests (selenium drives Debian's driver; nothing downloads one).
# bind9-dnsutils: nsupdate, with which the tests apply the script a rollback writes for what the primary refused.
# radicale: the data centre's CalDAV/CardDAV server, where Exchange calendars and contacts go (tests/lab/radicale.py).
# postgresql: the shared state store when several migration hosts work one plan; the lab runs its own initdb'd
# server on 127.0.0.1 (tests/lab/postgres.py), not the package's system service.
# dovecot-sieve, dovecot-managesieved, dovecot-lmtpd: Pigeonhole on every lab Dovecot (ManageSieve for the users'
# rules and out-of-office, Sieve filing of mail delivered over LMTP), as on the central host.
DEB_PACKAGES := dovecot-imapd dovecot-sieve dovecot-managesieved dovecot-lmtpd bind9 bind9-utils bind9-dnsutils \
                kamailio kamailio-tls-modules sipsak openssl iproute2 chromium chromium-driver radicale postgresql
BENCH_PACKAGES := isync

.PHONY: setup system-packages bench-packages venv test lint demo bench clean

setup: system-packages venv

system-packages:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

bench-packages:
	@dpkg -s $(BENCH_PACKAGES) >/dev/null 2>&1 || { \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BENCH_PACKAGES); }

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

lint: venv
	$(VENV)/bin/ruff check migrate tests benchmarks

# The suite runs in TEST_WORKERS processes (pytest-xdist), a test file to a process: most of its time is spent
# waiting for the lab's servers, and each process starts its own (free ports, its own loopback /24s).
TEST_WORKERS ?= 3

test: setup
	$(VENV)/bin/ruff check migrate tests benchmarks
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: setup
	$(PY) -m tests.lab.demo

# `make bench` runs every benchmark, `make bench BENCH="delta final"` some; BENCH_SCALE=0.1 shrinks the corpora.
# Each record is printed as one JSON line: govmigrate's figure beside its anchor's from the same run (README).
bench: setup bench-packages
	$(PY) -m benchmarks $(BENCH)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
