@echo off
rem photocluster launcher for Windows: double-click it. The first start creates .venv via bootstrap.py
rem (several minutes: torch is large); later starts open the app directly, without a console window.
setlocal
cd /d "%~dp0.."
if exist ".venv\Scripts\pythonw.exe" if exist ".venv\.install-stamp" (
    start "" ".venv\Scripts\pythonw.exe" -m photocluster.gui.app %*
    exit /b 0
)
where py >nul 2>nul && (
    py -3 -c "import sys; sys.exit(sys.version_info < (3, 11))" && (
        py -3 bootstrap.py run %*
        exit /b %errorlevel%
    )
)
where python >nul 2>nul && (
    python -c "import sys; sys.exit(sys.version_info < (3, 11))" && (
        python bootstrap.py run %*
        exit /b %errorlevel%
    )
)
echo photocluster needs Python 3.11 or newer: install it from https://www.python.org (tick "Add to PATH").
pause
exit /b 1
