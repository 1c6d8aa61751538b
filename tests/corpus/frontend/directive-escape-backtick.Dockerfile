# escape=`
FROM mcr.microsoft.com/windows/servercore:ltsc2022
ENV TOOLS=C:\tools `
    GREETING="hello world"
COPY testfile.txt c:\
RUN dir c:\ `
    /w
WORKDIR C:\app
LABEL path=C:\data `
      escaped=`$HOME
