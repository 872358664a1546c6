# photocluster launcher for Windows PowerShell: right-click → "Run with PowerShell", or
#   powershell -ExecutionPolicy Bypass -File packaging\photocluster.ps1 [folders...]
# The first start creates .venv via bootstrap.py (several minutes: torch is large).
$ErrorActionPreference = "Stop"
$Root = Split-Path -Parent $PSScriptRoot
Set-Location $Root
$Venv = Join-Path $Root ".venv\Scripts\pythonw.exe"
if ((Test-Path $Venv) -and (Test-Path (Join-Path $Root ".venv\.install-stamp"))) {
    Start-Process -FilePath $Venv -ArgumentList (@("-m", "photocluster.gui.app") + $args)
    exit 0
}
foreach ($candidate in @(@("py", "-3"), @("python"))) {
    $exe = $candidate[0]
    $pre = @($candidate | Select-Object -Skip 1)
    if (Get-Command $exe -ErrorAction SilentlyContinue) {
        & $exe @pre -c "import sys; sys.exit(sys.version_info < (3, 11))"
        if ($LASTEXITCODE -eq 0) {
            & $exe @pre bootstrap.py run @args
            exit $LASTEXITCODE
        }
    }
}
Write-Host "photocluster needs Python 3.11 or newer: install it from https://www.python.org (tick 'Add to PATH')."
Read-Host "Press Enter to close"
exit 1
