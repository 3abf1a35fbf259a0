"""The desktop application: the only PySide6 importer (window, tray, bridge) and the CLI."""
