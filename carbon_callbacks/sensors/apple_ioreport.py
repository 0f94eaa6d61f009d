"""IOReport's ``Energy Model`` channels through ctypes (macOS on Apple silicon, no root).

IOReport is a private macOS library; its calls are those macmon, asitop and all-smi make
(``IOReportCopyChannelsInGroup``, ``IOReportCreateSubscription``, ``IOReportCreateSamples``,
``IOReportChannelGetChannelName`` / ``GetUnitLabel``, ``IOReportSimpleGetIntegerValue``),
with CoreFoundation for the dictionaries. Nothing is loaded at import: the libraries are
opened by `IOReportSampler`, so this module imports everywhere (our Linux CI imports it and
tests the parsers in `apple` that turn its records into joules); it only runs on macOS.
"""

from __future__ import annotations

import ctypes
from typing import Any

IOREPORT_PATH = "/usr/lib/libIOReport.dylib"
COREFOUNDATION_PATH = "/System/Library/Frameworks/CoreFoundation.framework/CoreFoundation"
_UTF8 = 0x08000100  # kCFStringEncodingUTF8
_GROUP = b"Energy Model"

_P = ctypes.c_void_p


def _bind(lib: Any, name: str, restype: Any, *argtypes: Any) -> Any:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


class IOReportSampler:
    """Subscribes to the ``Energy Model`` group once; ``sample()`` returns ``(channel,
    unit, value)`` for each channel of a fresh raw sample (cumulative counters)."""

    def __init__(self) -> None:
        io = ctypes.CDLL(IOREPORT_PATH)
        cf = ctypes.CDLL(COREFOUNDATION_PATH)
        self._cf_release = _bind(cf, "CFRelease", None, _P)
        self._str = _bind(cf, "CFStringCreateWithCString", _P, _P, ctypes.c_char_p, ctypes.c_uint32)
        self._cstr = _bind(
            cf,
            "CFStringGetCString",
            ctypes.c_bool,
            _P,
            ctypes.c_char_p,
            ctypes.c_long,
            ctypes.c_uint32,
        )
        self._dict_get = _bind(cf, "CFDictionaryGetValue", _P, _P, _P)
        self._dict_count = _bind(cf, "CFDictionaryGetCount", ctypes.c_long, _P)
        self._dict_copy = _bind(cf, "CFDictionaryCreateMutableCopy", _P, _P, ctypes.c_long, _P)
        self._array_count = _bind(cf, "CFArrayGetCount", ctypes.c_long, _P)
        self._array_get = _bind(cf, "CFArrayGetValueAtIndex", _P, _P, ctypes.c_long)
        copy_group = _bind(
            io,
            "IOReportCopyChannelsInGroup",
            _P,
            _P,
            _P,
            ctypes.c_uint64,
            ctypes.c_uint64,
            ctypes.c_uint64,
        )
        subscribe = _bind(
            io, "IOReportCreateSubscription", _P, _P, _P, ctypes.POINTER(_P), ctypes.c_uint64, _P
        )
        self._samples = _bind(io, "IOReportCreateSamples", _P, _P, _P, _P)
        self._name = _bind(io, "IOReportChannelGetChannelName", _P, _P)
        self._unit = _bind(io, "IOReportChannelGetUnitLabel", _P, _P)
        self._value = _bind(io, "IOReportSimpleGetIntegerValue", ctypes.c_int64, _P, ctypes.c_int32)
        group = self._str(None, _GROUP, _UTF8)
        channels = copy_group(group, None, 0, 0, 0)
        self._cf_release(group)
        if not channels:
            raise OSError("IOReport has no 'Energy Model' channel group")
        self._desired = self._dict_copy(None, self._dict_count(channels), channels)
        self._cf_release(channels)
        self._subscribed = _P()
        self._subscription = subscribe(None, self._desired, ctypes.byref(self._subscribed), 0, None)
        if not self._subscription:
            raise OSError("IOReportCreateSubscription failed")
        self._key = self._str(None, b"IOReportChannels", _UTF8)

    def _text(self, ref: Any) -> str:
        if not ref:
            return ""
        buffer = ctypes.create_string_buffer(256)
        return buffer.value.decode() if self._cstr(ref, buffer, 256, _UTF8) else ""

    def sample(self) -> list[tuple[str, str, int]]:
        samples = self._samples(self._subscription, self._subscribed, None)
        if not samples:
            raise OSError("IOReportCreateSamples returned nothing")
        try:
            array = self._dict_get(samples, self._key)
            records = []
            for i in range(self._array_count(array) if array else 0):
                channel = self._array_get(array, i)
                records.append(
                    (
                        self._text(self._name(channel)),
                        self._text(self._unit(channel)),
                        int(self._value(channel, 0)),
                    )
                )
            return records
        finally:
            self._cf_release(samples)

    def close(self) -> None:
        for ref in (self._key, self._desired):
            if ref:
                self._cf_release(ref)
        self._key = self._desired = None
