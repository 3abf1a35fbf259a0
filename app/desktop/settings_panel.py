"""Settings: the engine's typed configuration (``engine.config``), edited in place.

Every key of ``engine.config.KEYS`` gets an editor made from its kind (a list for a choice,
a text box for the rest) with its help as the tooltip, grouped by section; "Save" writes the
changed keys with ``config.set_value`` (the same validation and atomic write as
``tandem config set``) on the bridge's worker thread, and each bad value is one line. Nothing
about the keys is duplicated here. Besides the keys:

- models: the embedded ones in the model list, any GGUF by path, and a download from a URL
  with progress, ETA, resume and SHA-256 (``app.download``, on its own thread);
- devices: the microphones and speakers (``engine.senses.sound.devices``, read on the worker)
  and the live microphone level (the composition's level channel, drained on a timer);
- the remote server's API key, stored in the system keyring, never in the file;
- start at login (``app.desktop.autostart``).

Changes take effect at the next start (the window says so).
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app import download
from app.desktop import autostart
from app.desktop.bridge import Bridge, WorkResult
from engine import config
from engine.model import embedded, registry

METER_MS = 100
METER_FLOOR_DB = -60.0


class _DownloadSignals(QObject):
    progress = Signal(object)
    finished = Signal(str, str)  # path or "", error or ""


class SettingsPanel(QWidget):
    """See the module docstring."""

    def __init__(self, bridge: Bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.editors: dict[str, QLineEdit | QComboBox] = {}
        self.shown: dict[str, str] = {}
        layout = QVBoxLayout(self)
        sections: dict[str, QFormLayout] = {}
        for key in config.KEYS:
            form = sections.get(key.section)
            if form is None:
                box = QGroupBox(key.section.replace("_", " "))
                form = sections[key.section] = QFormLayout(box)
                layout.addWidget(box)
            editor = self._editor(key)
            editor.setObjectName(f"key-{key.dotted}")
            editor.setToolTip(f"{key.help} ({key.kind.describe()}; env {key.env})")
            self.editors[key.dotted] = editor
            form.addRow(key.name.replace("_", " "), editor)

        # models: a download from a URL
        self.url = QLineEdit()
        self.url.setObjectName("download-url")
        self.url.setPlaceholderText("https://.../model.gguf")
        self.sha = QLineEdit()
        self.sha.setObjectName("download-sha256")
        self.sha.setPlaceholderText("expected SHA-256 (64 hex digits)")
        self.fetch = QPushButton("Download")
        self.fetch.setObjectName("download")
        self.stop = QPushButton("Cancel")
        self.stop.setEnabled(False)
        self.bar = QProgressBar()
        self.bar.setObjectName("download-progress")
        self.eta = QLabel("")
        self.eta.setObjectName("download-eta")
        row = QHBoxLayout()
        row.addWidget(self.fetch)
        row.addWidget(self.stop)
        row.addWidget(self.bar, 1)
        form = sections["model"]
        form.addRow("download from", self.url)
        form.addRow("its SHA-256", self.sha)
        form.addRow(row)
        form.addRow(self.eta)

        # devices: the level meter
        self.meter = QProgressBar()
        self.meter.setObjectName("level-meter")
        self.meter.setRange(0, 100)
        self.meter.setFormat("%v")
        sections["devices"].addRow("microphone level", self.meter)

        # remote: the API key in the keyring
        self.api_key = QLineEdit()
        self.api_key.setObjectName("api-key")
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("stored in the system keyring, never in a file")
        self.save_key = QPushButton("Store key")
        key_row = QHBoxLayout()
        key_row.addWidget(self.api_key, 1)
        key_row.addWidget(self.save_key)
        sections["remote"].addRow("API key", key_row)

        self.login = QCheckBox("Start Tandem at login")
        self.login.setObjectName("start-at-login")
        self.login.setChecked(autostart.enabled())
        self.save = QPushButton("Save")
        self.save.setObjectName("save-settings")
        self.message = QLabel("")
        self.message.setObjectName("settings-message")
        self.message.setWordWrap(True)
        layout.addWidget(self.login)
        layout.addWidget(self.save)
        layout.addWidget(self.message)
        layout.addStretch(1)

        self._dl = _DownloadSignals()
        self._dl.progress.connect(self._progress, Qt.ConnectionType.QueuedConnection)
        self._dl.finished.connect(self._downloaded, Qt.ConnectionType.QueuedConnection)
        self._dl_thread: threading.Thread | None = None
        self._dl_cancel = threading.Event()
        self.fetch.clicked.connect(self.start_download)
        self.stop.clicked.connect(self._dl_cancel.set)
        self.save.clicked.connect(self.apply)
        self.save_key.clicked.connect(self._store_key)
        self.login.toggled.connect(self._login)
        self.bridge.done.connect(self._done)
        self._meter = QTimer(self)
        self._meter.setInterval(METER_MS)
        self._meter.timeout.connect(self._level)
        self.bridge.ready.connect(self._meter.start)
        self.reload()

    def _editor(self, key: config.Key) -> QLineEdit | QComboBox:
        if isinstance(key.kind, config.Choice):
            box = QComboBox()
            box.addItems([str(c.value) for c in key.kind.choices])
            return box
        if key.dotted == "model.name":
            box = QComboBox()
            box.setEditable(True)
            box.addItems(["default", *sorted(registry.EMBEDDED)])
            return box
        if key.section == "devices":
            box = QComboBox()
            box.setEditable(True)
            box.addItem("default")
            return box
        return QLineEdit()

    # --- values ----------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the configuration in force and the device list (on the worker)."""
        self.bridge.run_job("config_load", config.load)
        self.bridge.run_job("devices", _device_names)

    def values(self) -> dict[str, str]:
        """The text of every editor now."""
        out = {}
        for dotted, editor in self.editors.items():
            out[dotted] = editor.currentText() if isinstance(editor, QComboBox) else editor.text()
        return out

    def apply(self) -> None:
        """Save every key the user changed (validated and written on the worker)."""
        changed = {k: v for k, v in self.values().items() if v != self.shown.get(k)}
        if not changed:
            self.message.setText("nothing changed")
            return
        self.bridge.run_job("config_set", lambda: _set_all(changed))

    def _show(self, loaded: config.Loaded) -> None:
        values = config.to_json(loaded.config)
        for dotted, editor in self.editors.items():
            section, name = dotted.split(".")
            value = values[section][name]
            text = "default" if value is None else str(value)
            self.shown[dotted] = text
            if isinstance(editor, QComboBox):
                if editor.findText(text) < 0:
                    editor.addItem(text)
                editor.setCurrentText(text)
            else:
                editor.setText(text)
        if loaded.problems:
            self.message.setText("\n".join(loaded.lines()))

    def _done(self, result: WorkResult) -> None:
        if result.job == "config_load" and isinstance(result.value, config.Loaded):
            self._show(result.value)
        elif result.job == "devices" and isinstance(result.value, tuple):
            mics, speakers = result.value
            for dotted, names in (("devices.mic", mics), ("devices.speaker", speakers)):
                box = self.editors[dotted]
                assert isinstance(box, QComboBox)
                current = box.currentText()
                for name in names:
                    if box.findText(name) < 0:
                        box.addItem(name)
                box.setCurrentText(current)
        elif result.job == "config_set":
            if result.error:
                self.message.setText(result.error)
            else:
                problems = result.value if isinstance(result.value, list) else []
                self.message.setText(
                    "\n".join(problems) if problems else "saved; takes effect at the next start"
                )
                self.reload()
        elif result.job in {"store_key", "autostart"}:
            self.message.setText(result.error or str(result.value))

    # --- download --------------------------------------------------------------------------

    def start_download(self) -> None:
        """Download the URL into the models folder (resumes a part left by an earlier try)."""
        url, sha = self.url.text().strip(), self.sha.text().strip() or None
        if self._dl_thread is not None:
            return
        name = Path(url.split("?")[0]).name or "model.gguf"
        dest = embedded.models_dir() / name
        self._dl_cancel.clear()
        self.fetch.setEnabled(False)
        self.stop.setEnabled(True)
        self.eta.setText("starting ...")

        def work() -> None:
            try:
                path = download.download(
                    url, dest, sha, progress=self._dl.progress.emit, cancel=self._dl_cancel
                )
            except download.DownloadError as e:
                self._dl.finished.emit("", " ".join(str(e).split()))
            else:
                self._dl.finished.emit(str(path), "")

        self._dl_thread = threading.Thread(target=work, name="tandem-download")
        self._dl_thread.start()

    def _progress(self, p: download.Progress) -> None:
        if p.fraction is not None:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(p.fraction * 1000))
        else:
            self.bar.setRange(0, 0)
        eta = f", {p.eta_s:.0f} s left" if p.eta_s is not None else ""
        resumed = f" (resumed at {p.resumed_from} bytes)" if p.resumed_from else ""
        self.eta.setText(f"{p.done / 1e6:.1f} MB at {p.rate_bps / 1e6:.1f} MB/s{eta}{resumed}")

    def _downloaded(self, path: str, error: str) -> None:
        if self._dl_thread is not None:
            self._dl_thread.join()
            self._dl_thread = None
        self.fetch.setEnabled(True)
        self.stop.setEnabled(False)
        if error:
            self.eta.setText(error)
            return
        self.bar.setRange(0, 1000)
        self.bar.setValue(1000)
        self.eta.setText(f"verified and saved: {path}")
        box = self.editors["model.name"]
        assert isinstance(box, QComboBox)
        box.addItem(path)
        box.setCurrentText(path)
        sha = self.editors["model.sha256"]
        if isinstance(sha, QLineEdit) and self.sha.text().strip():
            sha.setText(self.sha.text().strip().lower())

    # --- meter, keyring, login -------------------------------------------------------------

    def _level(self) -> None:
        live = self.bridge.live
        levels = live.levels if live is not None else None
        if levels is None:
            return
        got = levels.drain()
        if got:
            loudest = max(x.rms_dbfs for x in got)
            self.meter.setValue(int(max(0.0, (loudest - METER_FLOOR_DB) / -METER_FLOOR_DB) * 100))

    def _store_key(self) -> None:
        from permissions import secrets

        url = self.values()["remote.url"].strip()
        key = self.api_key.text()
        self.api_key.clear()
        if not url or url == "default" or not key:
            self.message.setText("set the remote url first, then its key")
            return
        name = f"server:{url}"
        self.bridge.run_job("store_key", lambda: _store(secrets.set_secret, name, key))

    def _login(self, on: bool) -> None:
        self.bridge.run_job(
            "autostart",
            lambda: f"start at login: {'on' if on else 'off'} ({autostart.set_enabled(on)})",
        )

    def close_download(self) -> None:
        """Cancel a download in progress and join its thread (the part is kept)."""
        self._dl_cancel.set()
        if self._dl_thread is not None:
            self._dl_thread.join()
            self._dl_thread = None


def _store(set_secret: object, name: str, key: str) -> str:
    assert callable(set_secret)
    set_secret(name, key)
    return f"key stored in the keyring as {name}"


def _set_all(changed: dict[str, str]) -> list[str]:
    problems = []
    for dotted, text in changed.items():
        try:
            config.set_value(dotted, text)  # "default" reads as null where null is allowed
        except config.ConfigError as e:
            problems.append(str(e))
    return problems


def _device_names() -> tuple[list[str], list[str]]:
    from engine.senses import sound

    devs = sound.devices()
    return [d.name for d in devs if d.inputs], [d.name for d in devs if d.outputs]
