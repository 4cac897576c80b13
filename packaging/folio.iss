; Inno Setup script for the Windows installer: wraps PyInstaller's dist\folio\ folder.
; Built by .github/workflows/release.yml on windows-latest (not tested on this Linux machine):
;   iscc /DAppVersion=0.1.0 /DSourceDir=dist\folio /DOutputDir=dist packaging\folio.iss
; The version comes from pyproject.toml through the workflow; the defaults are for a local run.
; Shortcuts and the post-install launch start folio-gui.exe, the windowed build of the same
; program (no console window); folio.exe stays the command-line tool (folio --self-test).

#ifndef AppVersion
  #define AppVersion "0.0.0"
#endif
#ifndef SourceDir
  #define SourceDir "..\dist\folio"
#endif
#ifndef OutputDir
  #define OutputDir "..\dist"
#endif

[Setup]
AppId={{7C1B2E64-5D0A-4C4B-9E57-3F0D6C1A9F21}
AppName=Folio
AppVersion={#AppVersion}
AppPublisher=Folio developers
AppComments=Chat with your own documents, entirely on your own machine.
DefaultDirName={autopf}\Folio
DefaultGroupName=Folio
DisableProgramGroupPage=yes
; Per-user install by default (no admin prompt); the user may choose all users.
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename=folio-{#AppVersion}-windows-x86_64-setup
SetupIconFile=..\resources\icons\folio.ico
UninstallDisplayIcon={app}\folio-gui.exe
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\Folio"; Filename: "{app}\folio-gui.exe"; IconFilename: "{app}\folio-gui.exe"
Name: "{autodesktop}\Folio"; Filename: "{app}\folio-gui.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\folio-gui.exe"; Description: "{cm:LaunchProgram,Folio}"; Flags: nowait postinstall skipifsilent
