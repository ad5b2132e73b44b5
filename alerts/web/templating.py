"""The page templates, with what every page needs in its context."""

from __future__ import annotations

from fastapi.templating import Jinja2Templates

from alerts.config import TEMPLATES_DIR
from alerts.web.security import CSRF_FIELD, csrf_token

templates = Jinja2Templates(directory=TEMPLATES_DIR / "web")
templates.env.globals.update(csrf_token=csrf_token, csrf_field_name=CSRF_FIELD)
