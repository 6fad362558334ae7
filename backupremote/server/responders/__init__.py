"""
Responder groups: one module per area of the protocol.

A group is a L{CommandLocator} built per connection with the server's
components and the connection; its C{@Command.responder} methods take a
L{RequestContext} first, then the command's arguments.
"""
