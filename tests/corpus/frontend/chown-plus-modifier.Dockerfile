FROM alpine
ARG USERNAME=app
ARG GROUP
COPY --chown=${USERNAME}${GROUP:+:}${GROUP} a /a
ARG GROUP=staff
COPY --chown=${USERNAME}${GROUP:+:}${GROUP} b /b
