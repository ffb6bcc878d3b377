"""``python -m live_engine``: the same as ``goldrl live``."""

from live_engine.cli import main

if __name__ == "__main__":
    main()
