"""The desktop companion (PySide6): window, tray, hotkey and the bridge to the engine."""
