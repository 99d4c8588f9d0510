"""`python -m amoiq_chat` is the `amoiq-chat` command."""
from .cli import main

raise SystemExit(main())
