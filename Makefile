# Quick start: `make run` (the whole system on the embedded default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck bench clean regions

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/alerts db upgrade
	$(BIN)/alerts ingest --redate sample/articles.jsonl sample/feed.xml sample/desk-export.txt
	$(BIN)/alerts up --host $(HOST) --port $(PORT)

# Browser tests drive Debian's Chromium (Playwright's own download needs the
# internet); installed once, as root, when it is missing.
/usr/bin/chromium:
	@if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium); \
	else echo "browser tests need /usr/bin/chromium: sudo apt-get install chromium"; fi

# The bounce mailbox tests read a real Dovecot (IMAP and POP3) that they start themselves.
/usr/sbin/dovecot:
	@if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q dovecot-imapd dovecot-pop3d || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dovecot-imapd dovecot-pop3d); \
	else echo "bounce mailbox tests need Dovecot: sudo apt-get install dovecot-imapd dovecot-pop3d"; fi

# The bounce loop test runs a private Postfix instance of its own (the system's
# Postfix stays unconfigured and stopped); installed without debconf questions.
/usr/sbin/postfix:
	@if [ "$$(id -u)" = 0 ]; then \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix || \
	  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix); \
	else echo "the Postfix loop test needs Postfix: sudo apt-get install postfix"; fi

# Every kind of mail is scored offline by SpamAssassin (its rules ship with the package).
/usr/bin/spamassassin:
	@if [ "$$(id -u)" = 0 ]; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends spamassassin || \
	  (apt-get update -q && \
	   DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends spamassassin); \
	else echo "mail scoring tests need SpamAssassin: sudo apt-get install spamassassin"; fi

test: $(VENV)/.installed-dev /usr/bin/chromium /usr/sbin/dovecot /usr/sbin/postfix /usr/bin/spamassassin
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/match.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# Regenerate the gazetteer data file (committed) from its sources.
regions: $(VENV)/.installed-dev
	$(BIN)/alerts regions build
